"""A node's key, stolen, changes only the fields its resource's ``Scope.node_writes_fields`` names: its
organization's public key and its own node's address (vantage6: the node role's edit rules let it rename
and re-address its node and the organization every partner sees). The edit's judgement refuses the rest,
whichever endpoint makes the edit."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from accounts.permissions import RESOURCE_SCOPES, nodes_with_rules, principal_for_node
from collaborations.models import Organization
from nodes.models import Node
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db

KEY = base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nnode\n-----END PUBLIC KEY-----\n").decode()


def _organization(pk: int) -> dict:
    stored = Organization.objects.get(pk=pk)
    fields = ("name", "domain", "address1", "country", "zipcode", "public_key")
    return {field: getattr(stored, field) for field in fields}


@dataclass(frozen=True)
class Writes:
    url: Callable[[object], str]
    stored: Callable[[object], dict]  # the row's fields as the database holds them
    permitted: list[tuple[dict, dict]]  # a body and what the database holds after it
    refused: list[dict]


WRITES = {
    "organization": Writes(
        url=lambda world: f"/api/organization/{world.org_a.pk}",
        stored=lambda world: _organization(world.org_a.pk),
        permitted=[({"public_key": KEY}, {"public_key": KEY})],
        refused=[
            {"name": "Trusted Hospital"},
            {"domain": "evil.example", "address1": "elsewhere", "country": "XX", "zipcode": "0000"},
            {"public_key": KEY, "name": "Trusted Hospital"},
        ],
    ),
    "node": Writes(
        url=lambda world: f"/api/node/{world.node_a.pk}",
        stored=lambda world: Node.objects.filter(pk=world.node_a.pk).values("name", "ip").get(),
        permitted=[({"ip": "10.8.0.9"}, {"ip": "10.8.0.9"}), ({"clear_ip": True}, {"ip": None})],
        refused=[{"name": "node-of-the-trusted-hospital"}, {"name": "renamed", "ip": "10.8.0.9"}],
    ),
}
CASES = [(resource, body) for resource, writes in WRITES.items() for body in writes.refused]


def test_every_resource_a_node_writes_in_part_is_in_the_table():
    declared = {name for name, scope in RESOURCE_SCOPES.items() if scope.node_writes_fields is not None}

    assert declared == set(WRITES)


@pytest.mark.parametrize(("resource", "body"), CASES, ids=[f"{r}-{'+'.join(b)}" for r, b in CASES])
def test_a_node_changes_no_other_field(api, world, resource, body):
    writes = WRITES[resource]
    before = writes.stored(world)

    response = api.patch(writes.url(world), body, format="json", **bearer(world.node_a))

    assert response.status_code == 401
    writable = RESOURCE_SCOPES[resource].node_writes_fields or frozenset()
    named = {field for field in [*writable, *body] if field in response.json()["msg"]}
    assert named == writable | set(body)
    assert writes.stored(world) == before


@pytest.mark.parametrize("resource", list(WRITES))
def test_a_node_changes_the_fields_it_writes(api, world, resource):
    writes = WRITES[resource]

    for body, stored in writes.permitted:
        before = writes.stored(world)
        response = api.patch(writes.url(world), body, format="json", **bearer(world.node_a))

        assert response.status_code == 200, (body, response.json())
        assert writes.stored(world) == {**before, **stored}


def test_an_edit_judged_without_its_fields_refuses_a_node(world):
    # A write that judges a node's edit of such a row without naming what it changes (as adding a node to
    # a collaboration does) is refused: no field beyond the declared ones slips through it.
    thief = principal_for_node(nodes_with_rules(Node.objects.filter(pk=world.node_a.pk)).get())

    assert thief.allows("node", world.node_a, "edit", fields={"ip"})
    assert not thief.allows("node", world.node_a, "edit")
    assert not thief.allows("node", world.node_a, "edit", fields={"collaboration"})


def test_an_organizations_admin_still_renames_it(api, world):
    admin = make_user(world.org_a, "Organization Admin")

    renamed = api.patch(
        WRITES["organization"].url(world), {"name": "A renamed"}, format="json", **bearer(admin)
    )

    assert (renamed.status_code, renamed.json()["name"]) == (200, "A renamed")
