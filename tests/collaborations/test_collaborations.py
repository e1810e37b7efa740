"""/api/collaboration and its member and node sub-resources."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from collaborations.models import AlgorithmStore, Collaboration, Study
from nodes.models import Node
from tasks.models import Run, Task
from tests.collaborations.helpers import container_headers, headers_of, ids, ref
from tests.factories import bearer, make_collab, make_node, make_org, make_study, make_task

pytestmark = pytest.mark.django_db


def test_nodes_and_containers_read_collaborations(api, world):
    assert ids(api.get("/api/collaboration", **bearer(world.node_a))) == [world.collab_ab.pk]
    assert api.get(f"/api/collaboration/{world.collab_c.pk}", **bearer(world.node_a)).status_code == 401
    assert (
        api.get(f"/api/collaboration/{world.collab_c.pk}", **container_headers(world.node_c)).status_code
        == 200
    )
    assert (
        api.get(f"/api/collaboration/{world.collab_ab.pk}", **container_headers(world.node_c)).status_code
        == 401
    )
    assert api.get("/api/collaboration", **container_headers(world.node_c)).status_code == 401
    patch = api.patch(
        f"/api/collaboration/{world.collab_ab.pk}", {"name": "x"}, format="json", **bearer(world.node_a)
    )
    assert patch.status_code == 401


# --- representation, include and filters ----------------------------------------------------------
def test_representation_and_include(api, world):
    viewer = headers_of(world.org_a, "Viewer")
    pk = world.collab_ab.pk
    body = api.get(f"/api/collaboration/{pk}", **viewer).json()
    assert body == {
        "id": pk, "name": "AB", "encrypted": False,
        "organizations": f"/api/organization?collaboration_id={pk}",
        "nodes": f"/api/node?collaboration_id={pk}", "tasks": f"/api/task?collaboration_id={pk}",
        "algorithm_stores": f"/api/algorithmstore?collaboration_id={pk}",
        "studies": f"/api/study?collaboration_id={pk}",
    }  # fmt: skip
    included = api.get(f"/api/collaboration/{pk}?include=organizations", **viewer).json()
    assert [org["id"] for org in included["organizations"]] == [world.org_a.pk, world.org_b.pk]
    assert included["organizations"][0]["name"] == "A"
    listed = api.get("/api/collaboration?include=organizations", **viewer).json()["data"]
    assert [org["name"] for org in listed[0]["organizations"]] == ["A", "B"]


def test_list_filters(api, world):
    root = headers_of(world.org_a, "Root")
    secret = make_collab(world.org_c, name="secret", encrypted=True)
    assert ids(api.get("/api/collaboration?name=A%25", **root)) == [world.collab_ab.pk]
    for value in ("1", "true", "True"):
        assert ids(api.get(f"/api/collaboration?encrypted={value}", **root)) == [secret.pk]
    for value in ("0", "false", "FALSE"):
        assert ids(api.get(f"/api/collaboration?encrypted={value}", **root)) == [
            world.collab_ab.pk,
            world.collab_c.pk,
        ]
    assert api.get("/api/collaboration?encrypted=maybe", **root).status_code == 400
    assert ids(api.get(f"/api/collaboration?organization_id={world.org_c.pk}", **root)) == [
        world.collab_c.pk, secret.pk,
    ]  # fmt: skip


def test_organization_filter_for_non_global_viewers(api, world):
    viewer = headers_of(world.org_a, "Viewer")
    assert ids(api.get(f"/api/collaboration?organization_id={world.org_a.pk}", **viewer)) == [
        world.collab_ab.pk
    ]
    assert api.get(f"/api/collaboration?organization_id={world.org_b.pk}", **viewer).status_code == 401


def test_algorithm_store_filter(api, world):
    root = headers_of(world.org_a, "Root")
    linked = AlgorithmStore.objects.create(name="s", url="https://s/api", collaboration=world.collab_c)
    everywhere = AlgorithmStore.objects.create(name="g", url="https://g/api")
    assert ids(api.get(f"/api/collaboration?algorithm_store_id={linked.pk}", **root)) == [world.collab_c.pk]
    assert ids(api.get(f"/api/collaboration?algorithm_store_id={everywhere.pk}", **root)) == [
        world.collab_ab.pk, world.collab_c.pk,
    ]  # fmt: skip
    assert api.get("/api/collaboration?algorithm_store_id=9999", **root).status_code == 404


# --- create / edit ---------------------------------------------------------------------------------
def test_create_answers_200_and_drops_unknown_organizations(api, world):
    root = headers_of(world.org_a, "Root")
    response = api.post(
        "/api/collaboration",
        {"name": "new", "organization_ids": [world.org_a.pk, 99999], "encrypted": True},
        format="json",
        **root,
    )
    assert response.status_code == 200
    collab = Collaboration.objects.get(pk=response.json()["id"])
    assert collab.encrypted is True
    assert list(collab.organizations.all()) == [world.org_a]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"organization_ids": [1], "encrypted": True}, "name"),
        ({"name": "n", "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": [], "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": [1, 1], "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": [0], "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": ["x"], "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": [10**30], "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": 1, "encrypted": True}, "organization_ids"),
        ({"name": "n", "organization_ids": [1]}, "encrypted"),
    ],
)
def test_create_validation(api, world, body, field):
    response = api.post("/api/collaboration", body, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Collaboration.objects.filter(name="n").exists()


def test_create_duplicate_name(api, world):
    body = {"name": "AB", "organization_ids": [world.org_a.pk], "encrypted": True}
    response = api.post("/api/collaboration", body, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    assert "already exists" in response.json()["msg"]


def test_patch_membership_needs_global_edit(api, world):
    admin = headers_of(world.org_a, "Collaboration Admin")
    url = f"/api/collaboration/{world.collab_ab.pk}"
    assert api.patch(url, {"organization_ids": [world.org_a.pk]}, format="json", **admin).status_code == 401
    assert world.collab_ab.organizations.count() == 2
    renamed = api.patch(url, {"name": "AB2", "encrypted": True}, format="json", **admin)
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["encrypted"]) == ("AB2", True)

    study = make_study(world.collab_ab, world.org_a, world.org_b)
    root = headers_of(world.org_a, "Root")
    replaced = api.patch(url, {"organization_ids": [world.org_a.pk, world.org_c.pk]}, format="json", **root)
    assert replaced.status_code == 200
    assert set(world.collab_ab.organizations.values_list("pk", flat=True)) == {world.org_a.pk, world.org_c.pk}
    # A study only holds members of its collaboration.
    assert list(study.organizations.all()) == [world.org_a]
    assert api.patch(url, {"name": "C"}, format="json", **root).status_code == 400
    assert api.patch("/api/collaboration/9999", {"name": "x"}, format="json", **root).status_code == 404


# --- members --------------------------------------------------------------------------------------
def test_add_organization_is_idempotent_and_lists_members(api, world):
    admin = headers_of(world.org_a, "Root")
    url = f"/api/collaboration/{world.collab_ab.pk}/organization"
    for _ in range(2):
        response = api.post(url, {"id": world.org_c.pk}, format="json", **admin)
        assert response.status_code == 200
        assert [org["id"] for org in response.json()] == [world.org_a.pk, world.org_b.pk, world.org_c.pk]
    assert response.json()[2]["name"] == "C"
    assert api.post(url, {"id": 99999}, format="json", **admin).status_code == 404
    assert api.post(url, {}, format="json", **admin).status_code == 400
    assert api.post(url, {"id": "x"}, format="json", **admin).status_code == 400
    assert (
        api.post("/api/collaboration/9999/organization", {"id": 1}, format="json", **admin).status_code == 404
    )


def test_remove_organization(api, world):
    admin = headers_of(world.org_a, "Collaboration Admin")
    url = f"/api/collaboration/{world.collab_ab.pk}/organization"
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    response = api.delete(url, {"id": world.org_b.pk}, format="json", **admin)
    assert response.status_code == 200
    assert [org["id"] for org in response.json()] == [world.org_a.pk]
    assert list(study.organizations.all()) == [world.org_a]
    # Its node stays (the node can no longer get work there).
    assert Node.objects.filter(pk=world.node_b.pk, collaboration=world.collab_ab).exists()
    again = api.delete(url, {"id": world.org_b.pk}, format="json", **admin)
    assert again.status_code == 400
    assert "not part of" in again.json()["msg"]


# --- nodes ----------------------------------------------------------------------------------------
def test_attach_and_detach_node(api, world):
    admin = headers_of(world.org_a, "Collaboration Admin")
    url = f"/api/collaboration/{world.collab_ab.pk}/node"
    detached = api.delete(url, {"id": world.node_a.pk}, format="json", **admin)
    assert detached.status_code == 200
    assert "msg" in detached.json()
    world.node_a.refresh_from_db()
    assert world.node_a.collaboration_id is None
    assert api.delete(url, {"id": world.node_a.pk}, format="json", **admin).status_code == 400

    attached = api.post(url, {"id": world.node_a.pk}, format="json", **admin)
    assert attached.status_code == 201
    assert attached.json() == [
        {"id": node.pk, "ip": None, "last_seen": None, "status": "offline", "name": node.name,
         "organization": ref("organization", node.organization_id)}
        for node in (world.node_a, world.node_b)
    ]  # fmt: skip
    again = api.post(url, {"id": world.node_a.pk}, format="json", **admin)
    assert again.status_code == 400
    assert "already part" in again.json()["msg"]
    assert api.post(url, {"id": 99999}, format="json", **admin).status_code == 401  # as a hidden node


def test_attach_is_refused_for_outsiders_other_collaborations_and_second_nodes(api, world):
    root = headers_of(world.org_a, "Root")
    url = f"/api/collaboration/{world.collab_ab.pk}/node"
    # node C belongs to collaboration C
    assert "already belongs" in api.post(url, {"id": world.node_c.pk}, format="json", **root).json()["msg"]
    loose_c, _ = make_node(world.org_c, None, "loose-c")
    outsider = api.post(url, {"id": loose_c.pk}, format="json", **root)
    assert outsider.status_code == 400
    assert "not part of" in outsider.json()["msg"]
    loose_a, _ = make_node(world.org_a, None, "loose-a")
    second = api.post(url, {"id": loose_a.pk}, format="json", **root)
    assert second.status_code == 400
    assert "already has a node" in second.json()["msg"]
    loose_a.refresh_from_db()
    assert loose_a.collaboration_id is None


# --- delete ---------------------------------------------------------------------------------------
def test_delete_needs_the_flag_when_there_are_dependents_and_deletes_in_one_go(api, world):
    root = headers_of(make_org("root-org"), "Root")
    study = make_study(world.collab_ab, world.org_a)
    task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    store = AlgorithmStore.objects.create(name="s", url="https://s/api", collaboration=world.collab_ab)
    everywhere = AlgorithmStore.objects.create(name="g", url="https://g/api")
    url = f"/api/collaboration/{world.collab_ab.pk}"

    refused = api.delete(url, **root)
    assert refused.status_code == 400
    msg = refused.json()["msg"]
    assert "1 tasks" in msg and "2 nodes" in msg and "1 studies" in msg and "delete_dependents" in msg
    assert Collaboration.objects.filter(pk=world.collab_ab.pk).exists()

    response = api.delete(f"{url}?delete_dependents=1", **root)
    assert response.status_code == 200
    assert not Collaboration.objects.filter(pk=world.collab_ab.pk).exists()
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not Run.objects.filter(task_id=task.pk).exists()
    assert not Study.objects.filter(pk=study.pk).exists()
    assert not Node.objects.filter(pk__in=[world.node_a.pk, world.node_b.pk]).exists()
    assert not Authenticatable.objects.filter(pk__in=[world.node_a.pk, world.node_b.pk]).exists()
    # The collaboration's store link goes; it does not become a link for all collaborations.
    assert not AlgorithmStore.objects.filter(pk=store.pk).exists()
    assert AlgorithmStore.objects.filter(pk=everywhere.pk, collaboration=None).exists()
    assert Node.objects.filter(pk=world.node_c.pk).exists()


def test_delete_without_dependents(api, world):
    empty = make_collab(world.org_a)
    AlgorithmStore.objects.create(name="s", url="https://s/api", collaboration=empty)
    response = api.delete(f"/api/collaboration/{empty.pk}", **headers_of(world.org_a, "Root"))
    assert response.status_code == 200
    assert not AlgorithmStore.objects.exists()
    assert api.delete("/api/collaboration/99999", **headers_of(world.org_a, "Root")).status_code == 404
