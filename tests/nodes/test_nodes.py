"""/api/node: gates per role, the closed cross-collaboration leak, list filters, create, edit, delete."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from accounts.models import AuditEntry, Authenticatable
from nodes.models import Node, NodeConfig, api_key_digest
from tests.collaborations.helpers import headers_of, ids, ref
from tests.factories import bearer, make_collab, make_node, make_org, make_study, make_user

pytestmark = pytest.mark.django_db


def target(world, which: str) -> Node:
    return {"own": world.node_a, "collaborating": world.node_b, "unrelated": world.node_c}[which]


@pytest.mark.parametrize(
    "which,view,edit", [("own", 200, 200), ("collaborating", 401, 401), ("unrelated", 401, 401)]
)
def test_node_sees_and_edits_only_itself_and_its_organizations_nodes(api, world, which, view, edit):
    node = target(world, which)
    assert api.get(f"/api/node/{node.pk}", **bearer(world.node_a)).status_code == view
    patch = api.patch(f"/api/node/{node.pk}", {"ip": "10.0.0.9"}, format="json", **bearer(world.node_a))
    assert patch.status_code == edit
    assert api.delete(f"/api/node/{node.pk}", **bearer(world.node_a)).status_code == 401
    assert (
        api.post(
            "/api/node", {"collaboration_id": world.collab_ab.pk}, format="json", **bearer(world.node_a)
        ).status_code
        == 401
    )


# --- the cross-collaboration leak of vantage6 4.15.2 is closed ---------------------------------------------
@pytest.fixture
def bc(world):
    """Organization B is also in collaboration BC (with C), where it has a second node."""
    collab_bc = make_collab(world.org_b, world.org_c, name="BC")
    node, _ = make_node(world.org_b, collab_bc, "node-b-bc")
    return collab_bc, node


def test_collaboration_admin_of_a_cannot_reach_bs_node_in_another_collaboration(api, world, bc):
    collab_bc, node_b_bc = bc
    admin = headers_of(world.org_a, "Collaboration Admin")
    assert api.get(f"/api/node/{node_b_bc.pk}", **admin).status_code == 401
    assert api.patch(f"/api/node/{node_b_bc.pk}", {"name": "x"}, format="json", **admin).status_code == 401
    assert api.post("/api/recover/node", {"id": node_b_bc.pk}, format="json", **admin).status_code == 401
    assert api.delete(f"/api/node/{node_b_bc.pk}", **admin).status_code == 401
    assert Node.objects.filter(pk=node_b_bc.pk).exists()
    # Listing B's nodes shows only the one in the shared collaboration.
    assert ids(api.get(f"/api/node?organization_id={world.org_b.pk}", **admin)) == [world.node_b.pk]
    assert api.get(f"/api/node?collaboration_id={collab_bc.pk}", **admin).status_code == 401
    # Nor can it re-create B's node there once it is gone, and so get hold of BC's tasks.
    node_b_bc.delete()
    body = {"organization_id": world.org_b.pk, "collaboration_id": collab_bc.pk}
    assert api.post("/api/node", body, format="json", **admin).status_code == 401
    assert not Node.objects.filter(collaboration=collab_bc).exists()


def test_a_node_of_another_collaboration_cannot_be_attached(api, world, bc):
    collab_bc, node_b_bc = bc
    admin = headers_of(world.org_a, "Collaboration Admin")
    response = api.post(
        f"/api/collaboration/{world.collab_ab.pk}/node", {"id": node_b_bc.pk}, format="json", **admin
    )
    assert response.status_code == 400
    node_b_bc.refresh_from_db()
    assert node_b_bc.collaboration_id == collab_bc.pk


# --- representation -----------------------------------------------------------------------------------
def test_representation_with_config(api, world):
    NodeConfig.objects.create(node=world.node_a, key="database_labels", value="default")
    NodeConfig.objects.create(node=world.node_a, key="database_labels", value="extra")
    world.node_a.ip = "10.0.0.1"
    world.node_a.last_seen = datetime(2024, 1, 2, 3, 4, 5)
    world.node_a.save()
    body = api.get(f"/api/node/{world.node_a.pk}", **headers_of(world.org_a, "Viewer")).json()
    assert body == {
        "id": world.node_a.pk, "type": "node", "ip": "10.0.0.1", "last_seen": "2024-01-02T03:04:05",
        "status": "offline", "name": "node-a", "organization": ref("organization", world.org_a.pk),
        "collaboration": ref("collaboration", world.collab_ab.pk),
        "config": [
            {"key": "database_labels", "value": "default"}, {"key": "database_labels", "value": "extra"},
        ],
    }  # fmt: skip
    assert "api_key" not in body and "api_key_hash" not in body
    assert api.get("/api/node/99999", **headers_of(world.org_a, "Root")).status_code == 404


# --- list filters -------------------------------------------------------------------------------------
def test_list_filters(api, world):
    root = headers_of(world.org_a, "Root")
    Node.objects.filter(pk=world.node_b.pk).update(
        status="online", ip="10.0.0.2", last_seen=datetime(2024, 5, 10, 23, 59)
    )
    Node.objects.filter(pk=world.node_c.pk).update(last_seen=datetime(2024, 5, 12, 0, 0))
    assert ids(api.get(f"/api/node?organization_id={world.org_c.pk}", **root)) == [world.node_c.pk]
    assert ids(api.get(f"/api/node?collaboration_id={world.collab_ab.pk}", **root)) == [
        world.node_a.pk,
        world.node_b.pk,
    ]
    assert ids(api.get("/api/node?status=online", **root)) == [world.node_b.pk]
    assert ids(api.get("/api/node?status=offline", **root)) == [world.node_a.pk, world.node_c.pk]
    assert ids(api.get("/api/node?ip=10.0.0.2", **root)) == [world.node_b.pk]
    assert ids(api.get("/api/node?name=node-_", **root)) == [
        world.node_a.pk,
        world.node_b.pk,
        world.node_c.pk,
    ]
    assert ids(api.get("/api/node?name=%25c", **root)) == [world.node_c.pk]
    assert ids(api.get("/api/node?last_seen_from=2024-05-11", **root)) == [world.node_c.pk]
    assert ids(api.get("/api/node?last_seen_till=2024-05-10", **root)) == [world.node_b.pk]
    assert ids(api.get("/api/node?last_seen_from=2024-05-10&last_seen_till=2024-05-12", **root)) == [
        world.node_b.pk, world.node_c.pk,
    ]  # fmt: skip
    assert api.get("/api/node?last_seen_from=yesterday", **root).status_code == 400
    study = make_study(world.collab_ab, world.org_b)
    assert ids(api.get(f"/api/node?study_id={study.pk}", **root)) == [world.node_b.pk]
    assert api.get("/api/node?study_id=9999", **root).status_code == 404


def test_list_filters_are_gated(api, world):
    viewer = headers_of(world.org_a, "Viewer")
    assert api.get(f"/api/node?organization_id={world.org_b.pk}", **viewer).status_code == 200
    assert api.get(f"/api/node?organization_id={world.org_c.pk}", **viewer).status_code == 401
    assert api.get(f"/api/node?collaboration_id={world.collab_c.pk}", **viewer).status_code == 401
    study_c = make_study(world.collab_c, world.org_c)
    assert api.get(f"/api/node?study_id={study_c.pk}", **viewer).status_code == 401
    assert api.get("/api/node", **bearer(make_user(world.org_a))).status_code == 401
    assert ids(api.get("/api/node", **bearer(world.node_a))) == [world.node_a.pk]


# --- create / edit / delete ---------------------------------------------------------------------------
def test_create_returns_the_api_key_once(api, world):
    x = make_collab(world.org_a, world.org_b, name="X")
    response = api.post("/api/node", {"collaboration_id": x.pk, "ip": "1.2.3.4"}, format="json",
                        **headers_of(world.org_a, "Organization Admin"))  # fmt: skip
    assert response.status_code == 201
    body = response.json()
    node = Node.objects.get(pk=body["id"])
    assert body["name"] == "A - X Node" == node.name
    assert (body["status"], body["ip"], body["type"], body["config"]) == ("offline", None, "node", [])
    assert body["organization"] == ref("organization", world.org_a.pk)
    assert body["collaboration"] == ref("collaboration", x.pk)
    assert str(uuid.UUID(body["api_key"])) == body["api_key"]
    assert node.api_key_hash == api_key_digest(body["api_key"]) != body["api_key"]
    assert "api_key" not in api.get(f"/api/node/{node.pk}", **headers_of(world.org_a, "Root")).json()
    assert AuditEntry.objects.filter(action="node.create", object_id=node.pk).exists()


def test_create_refusals(api, world):
    root = headers_of(world.org_a, "Root")
    x = make_collab(world.org_a, name="X")
    cases = [
        ({"collaboration_id": world.collab_ab.pk}, 400, "already has a node"),
        ({"collaboration_id": x.pk, "organization_id": world.org_b.pk}, 400, "not part of"),
        ({"collaboration_id": x.pk, "name": "node-b"}, 400, "already exists"),
        ({"collaboration_id": 9999}, 404, None),
        ({"collaboration_id": x.pk, "organization_id": 9999}, 404, None),
        ({}, 400, None),
        ({"collaboration_id": "x"}, 400, None),
        ({"collaboration_id": x.pk, "ip": "not an ip"}, 400, None),
    ]
    for body, status, text in cases:
        response = api.post("/api/node", body, format="json", **root)
        assert response.status_code == status, body
        if text:
            assert text in response.json()["msg"]
    assert not Node.objects.filter(collaboration=x).exists()


def test_patch_ip_and_clear_ip_by_the_node_and_name_by_its_admin(api, world):
    headers = bearer(world.node_a)
    url = f"/api/node/{world.node_a.pk}"
    response = api.patch(url, {"ip": "10.1.2.3"}, format="json", **headers)
    assert response.status_code == 200
    assert response.json()["ip"] == "10.1.2.3"
    assert api.patch(url, {"ip": ""}, format="json", **headers).json()["ip"] == "10.1.2.3"
    assert api.patch(url, {"clear_ip": True}, format="json", **headers).json()["ip"] is None
    # Its name is what every partner and user sees: a node changes only its address (vantage6: also its
    # name; the official node never sends one), its organization's administrators rename it.
    assert api.patch(url, {"name": "renamed"}, format="json", **headers).status_code == 401
    admin = headers_of(world.org_a, "Organization Admin")
    assert api.patch(url, {"name": "renamed"}, format="json", **admin).json()["name"] == "renamed"
    assert api.patch(url, {"name": "node-b"}, format="json", **admin).status_code == 400
    for body in ({"ip": "nope"}, {"organization_id": 1}, {"collaboration_id": 1}, [1]):
        assert api.patch(url, body, format="json", **headers).status_code == 400, body
    world.node_a.refresh_from_db()
    assert (world.node_a.name, world.node_a.organization_id) == ("renamed", world.org_a.pk)


def test_delete_removes_the_node_its_identity_and_its_config(api, world):
    NodeConfig.objects.create(node=world.node_b, key="k", value="v")
    response = api.delete(f"/api/node/{world.node_b.pk}", **headers_of(world.org_a, "Collaboration Admin"))
    assert response.status_code == 200
    assert "msg" in response.json()
    assert not Authenticatable.objects.filter(pk=world.node_b.pk).exists()
    assert not NodeConfig.objects.exists()
    assert api.delete("/api/node/99999", **headers_of(world.org_a, "Root")).status_code == 404


def test_unrelated_organization_user_with_root_role_of_its_own(api, world):
    # A global role works from any organization.
    headers = headers_of(make_org("elsewhere"), "Root")
    assert api.get(f"/api/node/{world.node_c.pk}", **headers).status_code == 200
