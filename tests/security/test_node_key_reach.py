"""What a node's key, stolen, still reaches of its node and its organization's other collaborations.

The official node 4.15 reads its own node (`GET /node/{id}`), its collaboration, algorithm stores and the
runs and tasks of its collaboration, and changes its node's address only (`PATCH /node/{id}` with `ip` or
`clear_ip`): vantage6's node role lets it rename its node and read the nodes (with their addresses) and
studies of every collaboration of its organization."""

from __future__ import annotations

import pytest

from collaborations.models import AlgorithmStore
from nodes.models import Node
from tests.factories import bearer, make_collab, make_node, make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_collaboration(world):
    """Organization A also in collaboration AC with C, served by another node of A (with an address), and a
    study there that includes A."""
    ac = make_collab(world.org_a, world.org_c, name="AC")
    sibling, _ = make_node(world.org_a, ac, "node-a-in-ac")
    Node.objects.filter(pk=sibling.pk).update(ip="10.8.0.44")
    return ac, sibling, make_study(ac, world.org_a, world.org_c, name="AC study")


def test_a_node_does_not_see_its_organizations_nodes_of_other_collaborations(api, world, other_collaboration):
    ac, sibling, _ = other_collaboration
    thief = bearer(world.node_a)

    one = api.get(f"/api/node/{sibling.pk}", **thief)
    listed = api.get(f"/api/node?organization_id={world.org_a.pk}", **thief)
    in_ac = api.get(f"/api/node?collaboration_id={ac.pk}", **thief)

    assert one.status_code == 401
    assert "10.8.0.44" not in one.content.decode() + listed.content.decode() + in_ac.content.decode()
    assert [row["id"] for row in listed.json()["data"]] == [world.node_a.pk]
    assert in_ac.status_code == 401 or in_ac.json()["data"] == []


def test_a_node_does_not_see_studies_of_other_collaborations(api, world, other_collaboration):
    _, _, ac_study = other_collaboration
    own_study = make_study(world.collab_ab, world.org_a, world.org_b, name="AB study")
    thief = bearer(world.node_a)

    one = api.get(f"/api/study/{ac_study.pk}", **thief)
    listed = api.get("/api/study", **thief)
    of_own_organization = api.get(f"/api/study?organization_id={world.org_a.pk}", **thief)

    assert one.status_code == 401
    assert [row["id"] for row in listed.json()["data"]] == [own_study.pk]
    assert [row["id"] for row in of_own_organization.json()["data"]] == [own_study.pk]
    assert api.get(f"/api/study/{own_study.pk}", **thief).status_code == 200


def test_what_the_official_node_reads_still_answers(api, world, other_collaboration):
    store = AlgorithmStore.objects.create(name="everyone's", url="https://store.example", collaboration=None)
    node = bearer(world.node_a)

    own = api.get(f"/api/node/{world.node_a.pk}", **node)
    collaboration = api.get(f"/api/collaboration/{world.collab_ab.pk}", **node)
    organization = api.get(f"/api/organization/{world.org_a.pk}", **node)
    global_store = api.get(f"/api/algorithmstore/{store.pk}", **node)

    assert (own.status_code, own.json()["collaboration"]["id"]) == (200, world.collab_ab.pk)
    assert (collaboration.status_code, organization.status_code, global_store.status_code) == (200, 200, 200)
    # and what the users of its organization see is unchanged
    _, sibling, ac_study = other_collaboration
    viewer = bearer(make_user(world.org_a, "Viewer"))
    assert api.get(f"/api/node/{sibling.pk}", **viewer).status_code == 200
    assert api.get(f"/api/study/{ac_study.pk}", **viewer).status_code == 200
