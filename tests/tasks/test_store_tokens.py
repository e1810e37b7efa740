"""A user's token goes only to algorithm stores the operator trusts.

The store is a real HTTP server on this machine that records the Authorization header it receives;
a collaboration administrator who links a store of their own must not collect the tokens of the
researchers who create tasks with it, nor of the administrator who removes it.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps

from collaborations.models import AlgorithmStore
from tasks.models import Task
from tests.collaborations.helpers import FakeStore
from tests.factories import bearer, make_user
from tests.tasks.conftest import task_body

pytestmark = pytest.mark.django_db

SERVER_URL = "https://v6.example.org/api"


@pytest.fixture
def store(settings):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True  # the store listens on this machine
    with FakeStore() as fake:
        fake.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        fake.routes[("GET", "/algorithm")] = (
            200,
            {"data": [{"image": "some/image", "digest": "sha256:abc"}]},
        )
        yield fake


def link(api, store, who, collaboration_id) -> AlgorithmStore:
    body = {"name": "s", "algorithm_store_url": store.url, "server_url": SERVER_URL, "force": True,
            "collaboration_id": collaboration_id}  # fmt: skip
    response = api.post("/api/algorithmstore", body, format="json", **bearer(who))
    assert response.status_code == 201, response.json()
    store.requests.clear()
    return AlgorithmStore.objects.get(pk=response.json()["id"])


@pytest.mark.parametrize(
    ("linked_by", "trusted_setting", "forwarded"),
    [("Collaboration Admin", False, False), ("Collaboration Admin", True, True), ("Root", False, True)],
)
def test_task_creation_sends_the_users_token_only_to_trusted_stores(
    api, world, store, settings, linked_by, trusted_setting, forwarded
):
    # An administrator of the other organization of the collaboration links the store.
    linked = link(api, store, make_user(world.org_b, linked_by), world.collab_ab.pk)
    if trusted_setting:
        settings.ALGORITHM_STORE_TRUSTED = [store.url]
    researcher = bearer(make_user(world.org_a, "Researcher"))
    body = task_body(world, store_id=linked.pk, server_url=SERVER_URL)
    response = api.post("/api/task", body, format="json", **researcher)

    assert response.status_code == 201, response.json()
    assert Task.objects.get().image == "some/image@sha256:abc"
    [lookup] = store.requests
    assert lookup["path"] == "/algorithm"
    assert lookup["headers"]["server_url"] == SERVER_URL
    received = lookup["headers"].get("authorization")
    assert received == (researcher["HTTP_AUTHORIZATION"] if forwarded else None)


def test_a_store_made_available_to_all_collaborations_is_trusted(api, world, store):
    linked = link(api, store, make_user(world.org_b, "Collaboration Admin"), world.collab_ab.pk)
    root = bearer(make_user(world.org_a, "Root"))
    assert api.patch(f"/api/algorithmstore/{linked.pk}", {"collaboration_id": None}, format="json",
                     **root).status_code == 200  # fmt: skip
    researcher = bearer(make_user(world.org_a, "Researcher"))
    body = task_body(world, store_id=linked.pk, server_url=SERVER_URL)
    assert api.post("/api/task", body, format="json", **researcher).status_code == 201
    assert store.requests[0]["headers"]["authorization"] == researcher["HTTP_AUTHORIZATION"]


@pytest.mark.parametrize("answer", [(200, [{"id": 7, "url": SERVER_URL}]), (401, {"msg": "who are you?"})])
def test_removing_an_untrusted_store_sends_it_no_token(api, world, store, answer):
    linked = link(api, store, make_user(world.org_b, "Collaboration Admin"), world.collab_ab.pk)
    store.routes[("GET", "/vantage6-server")] = answer
    store.routes[("DELETE", "/vantage6-server/7")] = (200, {})
    root = bearer(make_user(world.org_a, "Root"))
    response = api.delete(f"/api/algorithmstore/{linked.pk}?server_url={SERVER_URL}", **root)

    assert response.status_code == 200, response.json()
    assert not AlgorithmStore.objects.exists()
    assert store.requests
    assert all("authorization" not in request["headers"] for request in store.requests)


def test_migration_trusts_the_stores_linked_to_all_collaborations(world):
    migration = importlib.import_module("collaborations.migrations.0003_store_trust")
    everywhere = AlgorithmStore.objects.create(name="g", url="https://g.org/api")
    linked = AlgorithmStore.objects.create(name="l", url="https://l.org/api", collaboration=world.collab_ab)
    migration.trust_stores_of_all_collaborations(django_apps, None)
    assert AlgorithmStore.objects.get(pk=everywhere.pk).trusted
    assert not AlgorithmStore.objects.get(pk=linked.pk).trusted


def test_removing_a_store_that_lists_this_server_many_times_calls_it_once_more(api, world, store):
    """A collaboration administrator's store lists thousands of entries for this server: removing it is
    one look-up and one removal, not a call for each entry (a request thread held as long as it likes)."""
    admin = make_user(world.org_b, "Collaboration Admin")
    linked = link(api, store, admin, world.collab_ab.pk)
    listed = 200
    store.routes[("GET", "/vantage6-server")] = (200, [{"id": n, "url": SERVER_URL} for n in range(listed)])
    for n in range(listed):
        store.routes[("DELETE", f"/vantage6-server/{n}")] = (200, {})
    response = api.delete(f"/api/algorithmstore/{linked.pk}?server_url={SERVER_URL}", **bearer(admin))

    assert response.status_code == 200, response.json()
    assert not AlgorithmStore.objects.exists()
    assert [(r["method"], r["path"]) for r in store.requests] == [
        ("GET", "/vantage6-server"),
        ("DELETE", "/vantage6-server/0"),
    ]
