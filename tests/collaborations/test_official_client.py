"""The official vantage6 client (4.15.2) against a running server: organizations, collaborations,
nodes, studies and algorithm stores."""

from __future__ import annotations

import base64

import pytest

from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from nodes.models import Node, api_key_digest
from tests.collaborations.helpers import FakeStore
from tests.factories import PASSWORD, make_org, make_user
from vantage6.client import Client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_server, world) -> Client:  # noqa: ARG001 - the world must exist before logging in
    root = make_user(make_org("root"), "Root", username="root-user")
    host, port = live_server.url.rsplit(":", 1)
    client = Client(host, int(port), "/api", log_level="critical")
    client.authenticate(root.username, PASSWORD)
    assert client.whoami.organization_name == "root"
    return client


def data(result) -> list[dict]:
    return result["data"] if isinstance(result, dict) else result


def test_organizations(client, world):
    names = {org["name"] for org in data(client.organization.list(per_page=100))}
    assert {"A", "B", "C", "root"} <= names
    members = data(client.organization.list(collaboration=world.collab_ab.pk))
    assert [org["name"] for org in members] == ["A", "B"]
    assert client.organization.get(world.org_a.pk)["name"] == "A"

    key = base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nxyz\n-----END PUBLIC KEY-----\n").decode()
    created = client.organization.create(
        name="D", address1="street 1", address2="city", zipcode="1234", country="NL", domain="d.org"
    )
    assert (created["name"], created["country"], created["public_key"]) == ("D", "NL", "")
    updated = client.organization.update(created["id"], country="BE")
    assert updated["country"] == "BE"
    # Root is no member of D: it may not set D's key, but its own.
    assert client.organization.update(created["id"], public_key=key).get("public_key") is None
    assert client.organization.update(public_key=key)["public_key"] == key
    client.organization.delete(created["id"])
    assert not Organization.objects.filter(pk=created["id"]).exists()


def test_collaborations(client, world):
    listed = data(client.collaboration.list(scope="global"))
    assert {c["name"] for c in listed} >= {"AB", "C"}
    assert client.collaboration.get(world.collab_ab.pk)["encrypted"] is False
    assert [c["id"] for c in data(client.collaboration.list(scope="global", encrypted=False))] == [
        world.collab_ab.pk, world.collab_c.pk,
    ]  # fmt: skip

    created = client.collaboration.create("new", [world.org_a.pk, world.org_b.pk], encrypted=True)
    assert (created["name"], created["encrypted"]) == ("new", True)
    cid = created["id"]
    assert client.collaboration.update(cid, name="renamed")["name"] == "renamed"
    members = client.collaboration.add_organization(world.org_c.pk, collaboration=cid)
    assert [org["id"] for org in members] == [world.org_a.pk, world.org_b.pk, world.org_c.pk]
    members = client.collaboration.remove_organization(world.org_b.pk, collaboration=cid)
    assert [org["id"] for org in members] == [world.org_a.pk, world.org_c.pk]

    client.setup_collaboration(cid)
    node = client.node.create(organization=world.org_a.pk, name="client-node")
    assert node["status"] == "offline"
    assert Node.objects.get(pk=node["id"]).api_key_hash == api_key_digest(node["api_key"])
    client.collaboration.delete(cid, delete_dependents=True)
    assert not Collaboration.objects.filter(pk=cid).exists()
    assert not Node.objects.filter(pk=node["id"]).exists()


def test_nodes(client, world):
    in_ab = data(client.node.list(collaboration=world.collab_ab.pk))
    assert {n["name"] for n in in_ab} == {"node-a", "node-b"}
    offline_of_c = data(client.node.list(is_online=False, organization=world.org_c.pk))
    assert [n["name"] for n in offline_of_c] == ["node-c"]
    assert client.node.get(world.node_b.pk)["organization"]["id"] == world.org_b.pk
    Node.objects.filter(pk=world.node_b.pk).update(ip="10.0.0.2")
    updated = client.node.update(world.node_b.pk, name="renamed", clear_ip=True)
    assert (updated["name"], updated["ip"]) == ("renamed", None)
    client.node.delete(world.node_b.pk)
    assert not Node.objects.filter(pk=world.node_b.pk).exists()


def test_studies(client, world):
    created = client.study.create("study", [world.org_a.pk], collaboration=world.collab_ab.pk)
    assert [org["id"] for org in created["organizations"]] == [world.org_a.pk]
    sid = created["id"]
    assert client.study.get(sid)["collaboration"]["id"] == world.collab_ab.pk
    listed = data(client.study.list(collaboration=world.collab_ab.pk, include_organizations=True))
    assert [org["name"] for org in listed[0]["organizations"]] == ["A"]
    assert client.study.update(sid, name="renamed")["name"] == "renamed"
    members = client.study.add_organization(world.org_b.pk, study=sid)
    assert [org["id"] for org in members] == [world.org_a.pk, world.org_b.pk]
    members = client.study.remove_organization(world.org_a.pk, study=sid)
    assert [org["id"] for org in members] == [world.org_b.pk]
    client.study.delete(sid)
    assert not Study.objects.filter(pk=sid).exists()


def test_algorithm_stores(client, world):
    everywhere = AlgorithmStore.objects.create(name="public", url="https://store.example/api")
    linked = AlgorithmStore.objects.create(
        name="ab", url="https://ab.example/api", collaboration=world.collab_ab
    )
    assert [s["name"] for s in data(client.store.list())] == ["public", "ab"]
    assert [s["name"] for s in data(client.store.list(collaboration=world.collab_c.pk))] == ["public"]
    assert client.store.get(linked.pk)["url"] == "https://ab.example/api"
    assert client.store.get(everywhere.pk)["collaborations"] is None
    assert client.store.update(linked.pk, name="renamed")["name"] == "renamed"


def test_algorithm_store_link_and_unlink_with_a_local_store(client, world, settings):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    with FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (201, {"id": 3})
        store.routes[("GET", "/vantage6-server")] = (200, [{"id": 3, "url": client.base_path}])
        store.routes[("DELETE", "/vantage6-server/3")] = (200, {})
        # The client sends the collaboration id as a one-element list.
        created = client.store.create(store.url, "local", collaboration=world.collab_ab.pk, force=True)
        assert created["url"] == store.url
        assert store.requests[0]["body"] == {"url": client.base_path, "force": True}
        client.store.delete(created["id"])
        assert [(r["method"], r["path"]) for r in store.requests][1:] == [
            ("GET", "/vantage6-server"), ("DELETE", "/vantage6-server/3"),
        ]  # fmt: skip
    assert not AlgorithmStore.objects.exists()
