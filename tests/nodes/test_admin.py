"""The admin pages of nodes, collaborations, studies and algorithm stores."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from collaborations.models import AlgorithmStore, Study
from nodes.models import Node, NodeConfig
from tests.factories import make_collab, make_user

pytestmark = pytest.mark.django_db

KEY = re.compile(r"API key of node '([^']+)': ([0-9a-f-]{36})")


def admin_client(org, role: str) -> Client:
    client = Client()
    client.force_login(make_user(org, role), backend="accounts.backends.RuleBackend")
    return client


def shown_keys(response) -> dict[str, str]:
    return dict(KEY.findall(" ".join(str(m) for m in get_messages(response.wsgi_request))))


def test_creating_a_node_shows_its_api_key_once(api, world):
    x = make_collab(world.org_a, name="X")
    client = admin_client(world.org_a, "Root")
    response = client.post(
        "/admin/nodes/node/add/",
        {"name": "admin-node", "organization": world.org_a.pk, "collaboration": x.pk, "ip": "",
         "config-TOTAL_FORMS": 0, "config-INITIAL_FORMS": 0},
    )  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    node = Node.objects.get(name="admin-node")
    assert node.status == "offline"
    api_key = shown_keys(response)["admin-node"]
    assert api.post("/api/token/node", {"api_key": api_key}, format="json").status_code == 200
    # Shown on the next page only.
    assert api_key in client.get("/admin/nodes/node/").content.decode()
    page = client.get(f"/admin/nodes/node/{node.pk}/change/")
    assert page.status_code == 200
    assert api_key not in page.content.decode()


def test_new_node_is_checked_like_the_api(world):
    client = admin_client(world.org_a, "Organization Admin")
    x = make_collab(world.org_a, world.org_b, name="X")
    form = {"ip": "", "config-TOTAL_FORMS": 0, "config-INITIAL_FORMS": 0}
    for fields in (
        {"name": "b", "organization": world.org_b.pk, "collaboration": x.pk},  # not its organization
        {"name": "a", "organization": world.org_a.pk, "collaboration": world.collab_ab.pk},  # has one there
    ):
        response = client.post("/admin/nodes/node/add/", {**form, **fields})
        assert response.status_code == 200  # the form again, with the error
        assert not Node.objects.filter(name=fields["name"]).exists()
    fields = {"name": "a", "organization": world.org_a.pk, "collaboration": x.pk}
    ok = client.post("/admin/nodes/node/add/", {**form, **fields})
    assert ok.status_code == 302


def test_node_list_shows_status_and_only_visible_nodes(world):
    world.node_a.status = "online"
    world.node_a.save()
    page = admin_client(world.org_a, "Organization Admin").get("/admin/nodes/node/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "node-a" in html and "node-b" in html and "online" in html
    assert "node-c" not in html


def test_reset_api_keys_action(api, world):
    client = admin_client(world.org_a, "Organization Admin")
    response = client.post(
        "/admin/nodes/node/",
        {"action": "reset_api_keys", "_selected_action": [world.node_a.pk, world.node_b.pk]},
    )
    assert response.status_code == 302
    keys = shown_keys(response)
    assert set(keys) == {"node-a"}  # node B is not its organization's

    def login(api_key: str) -> int:
        return api.post("/api/token/node", {"api_key": api_key}, format="json").status_code

    assert login(world.keys[world.node_a.pk]) == 401
    assert login(keys["node-a"]) == 200
    assert login(world.keys[world.node_b.pk]) == 200


def test_collaboration_page_shows_members_nodes_and_stores(world):
    NodeConfig.objects.create(node=world.node_a, key="k", value="v")
    AlgorithmStore.objects.create(name="store-ab", url="https://s/api", collaboration=world.collab_ab)
    client = admin_client(world.org_a, "Collaboration Admin")
    page = client.get(f"/admin/collaborations/collaboration/{world.collab_ab.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode().lower()
    for text in ("node-a", "node-b", "store-ab", "member organizations"):
        assert text in html, text
    # Collaboration C is not visible to it: the admin answers as for a missing row.
    other = client.get(f"/admin/collaborations/collaboration/{world.collab_c.pk}/change/")
    assert other.status_code == 302
    assert client.get("/admin/collaborations/collaboration/add/").status_code == 403
    root = admin_client(world.org_a, "Root")
    assert root.get("/admin/collaborations/collaboration/add/").status_code == 200


def test_study_members_must_be_collaboration_members(world):
    client = admin_client(world.org_a, "Collaboration Admin")
    response = client.post(
        "/admin/collaborations/study/add/",
        {"name": "s", "collaboration": world.collab_ab.pk, "organizations": [world.org_a.pk, world.org_c.pk]},
    )
    assert response.status_code == 200
    assert not Study.objects.exists()
    ok = client.post(
        "/admin/collaborations/study/add/",
        {"name": "s", "collaboration": world.collab_ab.pk, "organizations": [world.org_a.pk, world.org_b.pk]},
    )
    assert ok.status_code == 302
    members = set(Study.objects.get().organizations.values_list("pk", flat=True))
    assert members == {world.org_a.pk, world.org_b.pk}


def test_algorithm_store_links_are_made_through_the_api(world):
    client = admin_client(world.org_a, "Root")
    assert client.get("/admin/collaborations/algorithmstore/add/").status_code == 403
    assert client.get("/admin/collaborations/algorithmstore/").status_code == 200
