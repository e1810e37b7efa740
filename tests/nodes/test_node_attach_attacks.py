"""A node that left its collaboration joins another one only by someone who manages its organization's
nodes: a Collaboration Admin of a partner must not point another organization's node, and its data,
at a collaboration of its own choosing."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_collab, make_org, make_user
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db

# Who sends the request, and whether it may: the organization of the node (B), or another member.
ATTACHERS = [
    ("Collaboration Admin", "A", 401),
    ("Collaboration Admin", "B", 201),
    ("Root", "root", 201),
]


@pytest.mark.parametrize(("role", "organization", "status"), ATTACHERS)
def test_a_detached_node_joins_a_collaboration_only_by_an_editor_of_its_nodes(
    api, world, role, organization, status
):
    world.node_b.collaboration = None  # taken out of AB
    world.node_b.save()
    other = make_collab(world.org_a, world.org_b, name="AB2")
    orgs = {"A": world.org_a, "B": world.org_b, "root": make_org("root-org")}
    headers = bearer(make_user(orgs[organization], role))
    before = _state()

    response = api.post(
        f"/api/collaboration/{other.pk}/node", {"id": world.node_b.pk}, format="json", **headers
    )

    assert response.status_code == status, response.content
    world.node_b.refresh_from_db()
    if status == 401:
        assert set(response.json()) == {"msg"}
        assert _state() == before
        assert world.node_b.collaboration_id is None
    else:
        assert world.node_b.collaboration_id == other.pk
