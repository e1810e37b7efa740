"""A node's key, stolen, edits that node alone: not the other nodes of its organization, which serve
other collaborations (vantage6: every node of the organization, by the node role's organization-scope
edit rule)."""

from __future__ import annotations

import pytest

from nodes.models import Node
from tests.factories import bearer, make_collab, make_node

pytestmark = pytest.mark.django_db


def test_a_node_cannot_edit_a_sibling_node_of_its_organization(api, world):
    other_collaboration = make_collab(world.org_a, world.org_c, name="AC")
    sibling, _ = make_node(world.org_a, other_collaboration, "node-a-in-ac")
    thief = bearer(world.node_a)

    response = api.patch(f"/api/node/{sibling.pk}", {"ip": "203.0.113.9"}, format="json", **thief)

    assert response.status_code == 401
    sibling.refresh_from_db()
    assert sibling.ip is None
    # nor reads it: it serves another collaboration (tests/security/test_node_key_reach.py)
    assert api.get(f"/api/node/{sibling.pk}", **thief).status_code == 401


def test_a_node_still_edits_itself(api, world):
    response = api.patch(
        f"/api/node/{world.node_a.pk}", {"ip": "203.0.113.7"}, format="json", **bearer(world.node_a)
    )

    assert response.status_code == 200
    assert Node.objects.get(pk=world.node_a.pk).ip == "203.0.113.7"
