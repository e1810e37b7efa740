"""/api/algorithmstore, with a small local HTTP server standing in for the remote store."""

from __future__ import annotations

import socket
import time

import pytest

from accounts.models import AuditEntry
from collaborations.models import AlgorithmStore
from tasks.models import Task
from tests.collaborations.helpers import FakeStore, container_headers, headers_of, ids
from tests.factories import bearer, make_task

pytestmark = pytest.mark.django_db

SERVER_URL = "https://v6.example.org/api"


@pytest.fixture(autouse=True)
def _local_stores(settings):
    """The stores of these tests listen on this machine."""
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True


@pytest.fixture
def store():
    with FakeStore() as fake:
        fake.routes[("POST", "/vantage6-server")] = (201, {"id": 1, "url": SERVER_URL})
        fake.routes[("GET", "/vantage6-server")] = (200, [{"id": 7, "url": SERVER_URL}])
        fake.routes[("DELETE", "/vantage6-server/7")] = (200, {"msg": "deleted"})
        yield fake


@pytest.fixture
def links(world) -> dict[str, AlgorithmStore]:
    create = AlgorithmStore.objects.create
    return {
        "all collaborations": create(name="g", url="https://g.org/api"),
        "own collaboration": create(name="ab", url="https://ab.org/api", collaboration=world.collab_ab),
        "unrelated": create(name="c", url="https://c.org/api", collaboration=world.collab_c),
    }


def create(api, headers, url, **extra):
    body = {"name": "store", "algorithm_store_url": url, "server_url": SERVER_URL, "force": True, **extra}
    return api.post("/api/algorithmstore", body, format="json", **headers)


def test_nodes_may_read_a_store_and_containers_may_not(api, world, links):
    link = links["own collaboration"]
    assert api.get(f"/api/algorithmstore/{link.pk}", **bearer(world.node_a)).status_code == 200
    assert api.get(f"/api/algorithmstore/{links['unrelated'].pk}", **bearer(world.node_a)).status_code == 401
    assert api.get("/api/algorithmstore", **bearer(world.node_a)).status_code == 401
    assert api.get(f"/api/algorithmstore/{link.pk}", **container_headers(world.node_a)).status_code == 401


# --- list / get ----------------------------------------------------------------------------------------
def test_representation(api, world, links):
    viewer = headers_of(world.org_a, "Viewer")
    link = links["own collaboration"]
    assert api.get(f"/api/algorithmstore/{link.pk}", **viewer).json() == {
        "id": link.pk, "name": "ab", "url": "https://ab.org/api",
        "collaborations": f"/api/collaboration?algorithm_store_id={link.pk}",
    }  # fmt: skip
    assert (
        api.get(f"/api/algorithmstore/{links['all collaborations'].pk}", **viewer).json()["collaborations"]
        is None
    )
    assert api.get("/api/algorithmstore/9999", **viewer).status_code == 401  # as one out of reach


def test_list_filters(api, world, links):
    root = headers_of(world.org_a, "Root")
    assert ids(api.get("/api/algorithmstore?name=a_", **root)) == [links["own collaboration"].pk]
    assert ids(api.get("/api/algorithmstore?url=https://c%25", **root)) == [links["unrelated"].pk]
    by_collab = api.get(f"/api/algorithmstore?collaboration_id={world.collab_c.pk}", **root)
    assert ids(by_collab) == [links["all collaborations"].pk, links["unrelated"].pk]
    assert api.get("/api/algorithmstore?collaboration_id=9999", **root).status_code == 404
    viewer = headers_of(world.org_a, "Viewer")
    assert api.get(f"/api/algorithmstore?collaboration_id={world.collab_c.pk}", **viewer).status_code == 401
    own = api.get(f"/api/algorithmstore?collaboration_id={world.collab_ab.pk}", **viewer)
    assert ids(own) == [links["all collaborations"].pk, links["own collaboration"].pk]


# --- create ----------------------------------------------------------------------------------------------
def test_create_registers_this_server_at_the_store(api, world, store):
    headers = headers_of(world.org_a, "Collaboration Admin")
    # The official client sends the collaboration as a one-element list.
    response = create(api, headers, store.url + "/", collaboration_id=[world.collab_ab.pk])
    assert response.status_code == 201
    link = AlgorithmStore.objects.get()
    assert response.json() == {
        "id": link.pk, "name": "store", "url": store.url,
        "collaborations": f"/api/collaboration?algorithm_store_id={link.pk}",
    }  # fmt: skip
    assert link.collaboration_id == world.collab_ab.pk
    [call] = store.requests
    assert (call["method"], call["path"]) == ("POST", "/vantage6-server")
    assert call["body"] == {"url": SERVER_URL, "force": True}
    assert call["headers"]["server_url"] == SERVER_URL
    assert call["headers"]["authorization"] == headers["HTTP_AUTHORIZATION"]


def test_create_refuses_duplicates_and_local_urls_without_force(api, world, store):
    root = headers_of(world.org_a, "Root")
    assert create(api, root, store.url, collaboration_id=world.collab_ab.pk).status_code == 201
    again = create(api, root, store.url, collaboration_id=world.collab_ab.pk)
    assert again.status_code == 400
    local = create(api, root, store.url, collaboration_id=world.collab_c.pk, force=False)
    assert local.status_code == 400
    assert "localhost" in local.json()["msg"]
    assert len(store.requests) == 1


def test_linking_to_all_collaborations_replaces_single_links(api, world, store):
    root = headers_of(world.org_a, "Root")
    assert create(api, root, store.url, collaboration_id=world.collab_ab.pk).status_code == 201
    everywhere = create(api, root, store.url)
    assert everywhere.status_code == 201
    assert list(AlgorithmStore.objects.values_list("url", "collaboration_id")) == [(store.url, None)]
    assert create(api, root, store.url, collaboration_id=world.collab_c.pk).status_code == 400


def test_store_refusal_is_fine_when_its_algorithms_are_public(api, world, store):
    root = headers_of(world.org_a, "Root")
    store.routes[("POST", "/vantage6-server")] = (403, {"msg": "not allowed"})
    store.routes[("GET", "/policy/public")] = (200, {"algorithm_view": "public"})
    assert create(api, root, store.url).status_code == 201
    AlgorithmStore.objects.all().delete()
    store.routes[("GET", "/policy/public")] = (200, {"algorithm_view": "private"})
    refused = create(api, root, store.url)
    assert refused.status_code == 403
    assert refused.json() == {"msg": "Algorithm store error: not allowed"}
    assert not AlgorithmStore.objects.exists()


@pytest.mark.parametrize(
    "status,expected", [(400, 400), (401, 401), (500, 502), (503, 503), (504, 504), (200, 502), (302, 502)]
)
def test_store_errors_are_passed_on_with_the_stores_status(api, world, store, status, expected):
    store.routes[("POST", "/vantage6-server")] = (status, {"msg": "store says no"})
    response = create(api, headers_of(world.org_a, "Root"), store.url)
    assert response.status_code == expected
    assert response.json() == {"msg": "Algorithm store error: store says no"}
    assert not AlgorithmStore.objects.exists()


def test_unreachable_store_is_a_404(api, world):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    response = create(api, headers_of(world.org_a, "Root"), f"http://127.0.0.1:{port}/api")
    assert response.status_code == 404
    assert "cannot be reached" in response.json()["msg"]


def test_slow_store_times_out(api, world, store, settings):
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 1

    def slow():
        time.sleep(3)
        return 201, {}

    store.routes[("POST", "/vantage6-server")] = slow
    started = time.monotonic()
    response = create(api, headers_of(world.org_a, "Root"), store.url)
    assert response.status_code == 404
    assert time.monotonic() - started < 2.5
    assert not AlgorithmStore.objects.exists()


def test_server_url_comes_from_the_body_or_the_settings(api, world, store, settings):
    root = headers_of(world.org_a, "Root")
    settings.SERVER_URL = ""
    body = {"name": "s", "algorithm_store_url": store.url, "force": True}
    missing = api.post("/api/algorithmstore", body, format="json", **root)
    assert missing.status_code == 400
    settings.SERVER_URL = "https://configured.example"
    assert api.post("/api/algorithmstore", body, format="json", **root).status_code == 201
    assert store.requests[-1]["body"]["url"] == "https://configured.example/api"


def test_a_store_at_localhost_is_tried_again_at_the_dev_host(api, world, settings):
    """A development store registered as ``localhost`` is reached at ``V6_DEV_HOST_URI`` (a store
    beside a containerised server); without that setting it stays unreachable."""
    with FakeStore(host="127.0.0.2") as fake:  # not on localhost's own addresses
        fake.routes[("POST", "/vantage6-server")] = (201, {"id": 1, "url": SERVER_URL})
        local_url = fake.url.replace("127.0.0.2", "localhost")
        root = headers_of(world.org_a, "Root")
        assert create(api, root, local_url).status_code == 404
        settings.DEV_HOST_URI = "http://127.0.0.2"
        response = create(api, root, local_url)
        assert response.status_code == 201, response.json()
        assert response.json()["url"] == local_url
        assert [request["path"] for request in fake.requests] == ["/vantage6-server"]


def test_the_dev_host_is_not_used_for_other_hosts(api, world, settings):
    with FakeStore(host="127.0.0.2") as fake:
        settings.DEV_HOST_URI = "127.0.0.2"
        url = fake.url.replace("127.0.0.2", "127.0.0.3")
        assert create(api, headers_of(world.org_a, "Root"), url).status_code == 404
        assert fake.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"algorithm_store_url": "https://s.org"},
        {"name": "s"},
        {"name": "s", "algorithm_store_url": "not a url"},
        {"name": "s", "algorithm_store_url": "ftp://s.org/api"},
        {"name": "s", "algorithm_store_url": "https://s.org", "collaboration_id": "x"},
        {"name": "s", "algorithm_store_url": "https://s.org", "collaboration_id": [1, 2]},
        [],
    ],
)
def test_create_validation(api, world, body):
    response = api.post("/api/algorithmstore", body, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    assert response.json()["msg"] == "Request body is incorrect"


def test_create_for_unknown_collaboration(api, world, store):
    assert create(api, headers_of(world.org_a, "Root"), store.url, collaboration_id=9999).status_code == 404


# --- patch -------------------------------------------------------------------------------------------------
def test_patch(api, world, links):
    admin = headers_of(world.org_a, "Collaboration Admin")
    link = links["own collaboration"]
    url = f"/api/algorithmstore/{link.pk}"
    assert api.patch(url, {"name": "renamed"}, format="json", **admin).json()["name"] == "renamed"
    assert api.patch(url, {"url": "https://x"}, format="json", **admin).status_code == 400
    # Moving it to a collaboration the caller is not in, or to all, needs more.
    assert api.patch(url, {"collaboration_id": world.collab_c.pk}, format="json", **admin).status_code == 401
    assert api.patch(url, {"collaboration_id": None}, format="json", **admin).status_code == 401
    root = headers_of(world.org_a, "Root")
    moved = api.patch(url, {"collaboration_id": world.collab_c.pk}, format="json", **root)
    assert moved.status_code == 200
    link.refresh_from_db()
    assert link.collaboration_id == world.collab_c.pk
    assert api.patch(url, {"collaboration_id": 9999}, format="json", **root).status_code == 404
    made_global = api.patch(url, {"collaboration_id": None}, format="json", **root)
    assert made_global.json()["collaborations"] is None
    # One record per change made, none for those refused.
    edits = AuditEntry.objects.filter(action="algorithmstore.edit").order_by("id")
    assert [(e.object_id, e.data["fields"]) for e in edits] == [
        (link.pk, ["name"]), (link.pk, ["collaboration_id"]), (link.pk, ["collaboration_id"]),
    ]  # fmt: skip


# --- delete ------------------------------------------------------------------------------------------------
def test_delete_unregisters_and_removes_every_link_of_the_url(api, world, store):
    root = headers_of(world.org_a, "Root")
    first = AlgorithmStore.objects.create(name="s", url=store.url, collaboration=world.collab_ab)
    AlgorithmStore.objects.create(name="s", url=store.url, collaboration=world.collab_c)
    other = AlgorithmStore.objects.create(name="o", url="https://other.org/api")
    task = make_task(world.collab_ab, world.org_a, world.org_a, algorithm_store=first)
    store.routes[("GET", "/vantage6-server")] = (
        200,
        [{"id": 7, "url": SERVER_URL}, {"id": 8, "url": "https://x"}],
    )

    response = api.delete(f"/api/algorithmstore/{first.pk}?server_url={SERVER_URL}", **root)
    assert response.status_code == 200
    assert [(r["method"], r["path"]) for r in store.requests] == [
        ("GET", "/vantage6-server"), ("DELETE", "/vantage6-server/7"),
    ]  # fmt: skip
    assert store.requests[0]["headers"]["server_url"] == SERVER_URL
    assert list(AlgorithmStore.objects.all()) == [other]
    assert Task.objects.get(pk=task.pk).algorithm_store_id is None
    deleted = AuditEntry.objects.get(action="algorithmstore.delete")
    assert (deleted.object_id, deleted.data) == (first.pk, {"url": store.url})


def test_delete_when_the_store_does_not_know_this_server(api, world, store):
    link = AlgorithmStore.objects.create(name="s", url=store.url, collaboration=world.collab_ab)
    store.routes[("GET", "/vantage6-server")] = (403, {"msg": "not whitelisted"})
    response = api.delete(
        f"/api/algorithmstore/{link.pk}?server_url={SERVER_URL}", **headers_of(world.org_a, "Root")
    )
    assert response.status_code == 200
    assert not AlgorithmStore.objects.exists()


def test_delete_gates_and_errors(api, world, store, settings):
    settings.SERVER_URL = ""
    admin = headers_of(world.org_a, "Collaboration Admin")
    shared = AlgorithmStore.objects.create(name="s", url=store.url, collaboration=world.collab_ab)
    AlgorithmStore.objects.create(name="s", url=store.url, collaboration=world.collab_c)
    # The URL is linked elsewhere too, and all its links would go.
    assert api.delete(f"/api/algorithmstore/{shared.pk}?server_url={SERVER_URL}", **admin).status_code == 401
    root = headers_of(world.org_a, "Root")
    assert api.delete(f"/api/algorithmstore/{shared.pk}", **root).status_code == 400
    store.routes[("GET", "/vantage6-server")] = (500, {"msg": "broken"})
    failed = api.delete(f"/api/algorithmstore/{shared.pk}?server_url={SERVER_URL}", **root)
    assert failed.status_code == 502
    assert AlgorithmStore.objects.count() == 2
    assert api.delete("/api/algorithmstore/9999", **root).status_code == 404
    viewer = headers_of(world.org_a, "Viewer")
    assert api.delete(f"/api/algorithmstore/{shared.pk}?server_url={SERVER_URL}", **viewer).status_code == 401
    assert not AuditEntry.objects.filter(action="algorithmstore.delete").exists()
