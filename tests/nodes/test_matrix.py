"""The permission matrix of nodes, node login, key recovery and a collaboration's nodes (tests/matrix.py).

A node of a place is that place's organization's node in that place's collaboration, so it is
judged with ``allow_org_in_col`` on its own collaboration (permissions.md §3).
"""

# ruff: noqa: ARG005 - every path/body/status callable takes the same arguments, used or not

from __future__ import annotations

import pytest

from nodes.models import Node
from tests.factories import make_collab
from tests.matrix import (
    OTHER,
    OWN,
    PLACES,
    Case,
    Rules,
    deleted_unless_refused,
    list_case,
    matrix_tests,
    ok_if,
    place_node,
)

pytestmark = pytest.mark.django_db


def new_collab(ctx):
    """A collaboration without nodes: of A and B for the own and collaborating places, else of C."""
    world = ctx.world
    return make_collab(world.org_c) if ctx.place == OTHER else make_collab(world.org_a, world.org_b)


def detached_place_node(ctx) -> Node:
    node = place_node(ctx)
    node.collaboration = None
    node.save()
    return node


def attachable(r: Rules, place: str) -> bool:
    """Whether the node of ``place``, in no collaboration, may join the collaboration of ``place``: edit
    of that collaboration, and of the node (which, in no collaboration, only organization scope reaches)."""
    node_editor = r.has("node", "glo", "edit") or (r.has("node", "org", "edit") and place == OWN)
    return r.can_col("collaboration", "edit", place) and node_editor


def node_allowed(r: Rules, operation: str, place: str) -> bool:
    return r.allow_org_in_col("node", operation, place, place)


CASES = [
    list_case(
        "node", place_node, "/api/node",
        lambda r, _: {place for place in PLACES if node_allowed(r, "view", place)}, clients=("user", "node"),
    ),
    Case(
        "node list by organization", "get", "node", target=place_node,
        path=lambda ctx: f"/api/node?organization_id={ctx.org.pk}",
        status=lambda r, place: ok_if(r.allow_org("node", "view", place)),
        rows=lambda r, place: {place} if node_allowed(r, "view", place) else set(),
        clients=("user", "node"),
    ),
    Case(
        "node list by collaboration", "get", "node", target=place_node,
        path=lambda ctx: f"/api/node?collaboration_id={ctx.collab.pk}",
        status=lambda r, place: ok_if(r.can_col("node", "view", place)),
        clients=("user", "node"),
    ),
    Case(
        "node detail", "get", "node/<pk>", target=place_node,
        path=lambda ctx: f"/api/node/{ctx.target.pk}",
        status=lambda r, place: ok_if(node_allowed(r, "view", place)),
        clients=("user", "node"),
    ),
    Case(
        "node edit", "patch", "node/<pk>", target=place_node, rules=(("node", "edit"),),
        path=lambda ctx: f"/api/node/{ctx.target.pk}", body=lambda ctx: {"ip": "10.0.0.1"},
        status=lambda r, place: ok_if(node_allowed(r, "edit", place)),
        clients=("user", "node"),
    ),
    Case(
        "node delete", "delete", "node/<pk>", target=place_node, rules=(("node", "delete"),),
        path=lambda ctx: f"/api/node/{ctx.target.pk}",
        status=lambda r, place: ok_if(node_allowed(r, "delete", place)),
        check=deleted_unless_refused(Node),
    ),
    Case(
        "node create", "post", "node", target=new_collab, rules=(("node", "create"),),
        path=lambda ctx: "/api/node",
        body=lambda ctx: {"organization_id": ctx.org.pk, "collaboration_id": ctx.target.pk},
        status=lambda r, place: ok_if(node_allowed(r, "create", place), 201),
    ),
    Case(
        "node new api key", "post", "recover/node", target=place_node,
        path=lambda ctx: "/api/recover/node", body=lambda ctx: {"id": ctx.target.pk},
        status=lambda r, place: ok_if(node_allowed(r, "edit", place)),
    ),
    Case(
        "node login", "post", "token/node", auth="none", per_place=False,
        path=lambda ctx: "/api/token/node", body=lambda ctx: {"api_key": ctx.world.keys[ctx.world.node_a.pk]},
        status=lambda r, _: 200,
    ),
    Case(
        "node token validation", "post", "token/node/validate", per_place=False, clients=("node",),
        path=lambda ctx: "/api/token/node/validate", status=lambda r, _: 200,
    ),
    # --- a collaboration's nodes ---------------------------------------------------------------------------
    Case(
        "collaboration attach node", "post", "collaboration/<pk>/node", target=detached_place_node,
        path=lambda ctx: f"/api/collaboration/{ctx.collab.pk}/node", body=lambda ctx: {"id": ctx.target.pk},
        status=lambda r, place: ok_if(attachable(r, place), 201),
    ),
    Case(
        "collaboration detach node", "delete", "collaboration/<pk>/node", target=place_node,
        path=lambda ctx: f"/api/collaboration/{ctx.collab.pk}/node", body=lambda ctx: {"id": ctx.target.pk},
        status=lambda r, place: ok_if(r.can_col("collaboration", "edit", place)),
    ),
]  # fmt: skip


test_matrix, test_every_endpoint_has_a_case, test_every_node_rule_is_exercised = matrix_tests(
    CASES, "nodes.urls", ["node"]
)
