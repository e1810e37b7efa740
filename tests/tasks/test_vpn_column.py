"""VPN endpoints (none configured; algorithm addresses) and the UI's column discovery."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from nodes.models import NodeConfig
from tasks.models import AlgorithmPort, Run, Task
from tests.factories import bearer, make_run, make_task, make_user
from tests.tasks.conftest import container_identity, plain

pytestmark = pytest.mark.django_db


def test_vpn_config_is_not_available(api, world):
    for method, url in (("get", "/api/vpn"), ("post", "/api/vpn/update")):
        response = getattr(api, method)(url, **bearer(world.node_a))
        assert response.status_code == 501
        assert "VPN" in response.json()["msg"]
    assert api.get("/api/vpn", **bearer(make_user(world.org_a, "Root"))).status_code == 401


@pytest.fixture
def network(world):
    """parent task with runs at A and B, a child and the ports of all of them."""
    parent = make_task(world.collab_ab, world.org_a)
    child = make_task(world.collab_ab, world.org_a, parent=parent)
    runs = {
        "parent_a": make_run(parent, world.org_a),
        "parent_b": make_run(parent, world.org_b),
        "child_a": make_run(child, world.org_a),
    }
    for name, run in runs.items():
        AlgorithmPort.objects.create(run=run, port=1000 + run.pk, label=name)
    Authenticatable.objects.filter(pk=world.node_a.pk).update(ip="10.0.0.1")
    Authenticatable.objects.filter(pk=world.node_b.pk).update(ip="10.0.0.2")
    return parent, child, runs


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", {"parent_a", "parent_b"}),
        ("?include_children=1", {"parent_a", "parent_b", "child_a"}),
        ("?only_siblings=1", {"parent_b"}),
        ("?only_self=1", {"parent_a"}),
        ("?only_children=1", {"child_a"}),
        ("?label=parent_b", {"parent_b"}),
    ],
)
def test_algorithm_addresses(api, world, network, query, expected):
    parent, _child, _runs = network
    response = api.get(
        f"/api/vpn/algorithm/addresses{query}", **bearer(container_identity(parent, world.node_a))
    )
    assert response.status_code == 200
    addresses = response.json()["addresses"]
    assert {entry["label"] for entry in addresses} == expected
    by_label = {entry["label"]: entry for entry in addresses}
    if "parent_b" in by_label:
        assert by_label["parent_b"]["ip"] == "10.0.0.2"
        assert by_label["parent_b"]["organization_id"] == world.org_b.pk
        assert by_label["parent_b"]["task_id"] == parent.pk and by_label["parent_b"]["parent_id"] is None


def test_algorithm_addresses_of_a_child_and_errors(api, world, network):
    _parent, child, _runs = network
    headers = bearer(container_identity(child, world.node_a))
    only_parent = api.get("/api/vpn/algorithm/addresses?only_parent=1", **headers).json()["addresses"]
    assert {entry["label"] for entry in only_parent} == {"parent_a", "parent_b"}
    with_parent = api.get("/api/vpn/algorithm/addresses?include_parent=1", **headers).json()["addresses"]
    assert {entry["label"] for entry in with_parent} == {"parent_a", "parent_b", "child_a"}
    assert api.get("/api/vpn/algorithm/addresses?only_self=1&only_parent=1", **headers).status_code == 400
    assert api.get("/api/vpn/algorithm/addresses", **bearer(world.node_a)).status_code == 401


def test_column_names_from_node_config(api, world):
    researcher = make_user(world.org_a, "Researcher")
    for value in ("age", "weight"):
        NodeConfig.objects.create(node=world.node_b, key="columns_default", value=value)
    NodeConfig.objects.create(node=world.node_a, key="columns_other", value="x")
    body = {"db_label": "default", "collaboration_id": world.collab_ab.pk,
            "organizations": [{"id": world.org_a.pk, "input": plain()}]}  # fmt: skip
    response = api.post("/api/column", body, format="json", **bearer(researcher))
    assert (response.status_code, response.json()) == (200, {"columns": ["age", "weight"]})
    assert Task.objects.count() == 0


def test_column_names_through_a_task_when_no_node_shared_them(api, world):
    researcher = make_user(world.org_a, "Researcher")
    body = {"db_label": "default", "collaboration_id": world.collab_ab.pk, "query": "SELECT 1",
            "organizations": [{"id": world.org_a.pk, "input": plain()}]}  # fmt: skip
    response = api.post("/api/column", body, format="json", **bearer(researcher))
    assert response.status_code == 201
    data = response.json()
    assert data["name"] == "get_column_names" and data["image"] == "ghcr.io/vantage6/algorithm-basics:latest"
    assert data["databases"] == [{"label": "default", "parameters": '{"query":"SELECT 1"}'}]


def test_shared_column_names_need_only_the_organization_ids(api, world):
    researcher = make_user(world.org_a, "Researcher")
    NodeConfig.objects.create(node=world.node_b, key="columns_default", value="age")
    body = {
        "db_label": "default",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk}],
    }
    response = api.post("/api/column", body, format="json", **bearer(researcher))
    assert (response.status_code, response.json()) == (200, {"columns": ["age"]})
    assert Task.objects.count() == 0


def test_a_column_task_needs_an_input_like_any_task(api, world):
    researcher = make_user(world.org_a, "Researcher")
    body = {
        "db_label": "default",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk}],
    }
    response = api.post("/api/column", body, format="json", **bearer(researcher))
    assert response.status_code == 400
    assert response.json()["errors"] == {"organizations": {"0": {"input": ["This field is required."]}}}
    assert Task.objects.count() == Run.objects.count() == 0


def test_a_column_task_takes_the_legacy_object_input(api, world):
    researcher = make_user(world.org_a, "Researcher")
    body = {"db_label": "default", "collaboration_id": world.collab_ab.pk,
            "organizations": [{"id": world.org_a.pk, "input": {"method": "column_names"}}]}  # fmt: skip
    response = api.post("/api/column", body, format="json", **bearer(researcher))
    assert response.status_code == 201, response.json()
    assert Run.objects.get().input == plain({"method": "column_names"})


def test_column_errors(api, world):
    viewer = make_user(world.org_a, "Viewer")
    body = {"db_label": "default", "collaboration_id": world.collab_ab.pk,
            "organizations": [{"id": world.org_a.pk, "input": plain()}]}  # fmt: skip
    assert api.post("/api/column", body, format="json", **bearer(viewer)).status_code == 401
    missing = {**body, "collaboration_id": 99999}
    assert api.post("/api/column", missing, format="json", **bearer(viewer)).status_code == 401
    assert api.post("/api/column", {"db_label": "x"}, format="json", **bearer(viewer)).status_code == 400
