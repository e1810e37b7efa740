"""Node login with its API key, token validation, a new API key, and the node's start-up calls."""

from __future__ import annotations

import base64
import uuid

import jwt
import pytest
import requests
from django.db import connection

from nodes.models import Node
from tests.collaborations.helpers import headers_of
from tests.factories import bearer, make_collab, make_node, make_org

PEM = b"-----BEGIN PUBLIC KEY-----\nMIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEA\n-----END PUBLIC KEY-----\n"


def login(api, api_key: object):
    return api.post("/api/token/node", {"api_key": api_key}, format="json")


@pytest.mark.django_db
def test_login_answer(api, world):
    response = login(api, world.keys[world.node_a.pk])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "refresh_url", "node_url"}
    assert body["refresh_url"] == "/api/token/refresh"
    assert body["node_url"] == f"/api/node/{world.node_a.pk}"
    assert response["jwt-token"] == body["access_token"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["client_type"], claims["type"], claims["roles"]) == (
        world.node_a.pk, "node", "access", [],
    )  # fmt: skip
    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert (refresh["sub"], refresh["type"]) == (world.node_a.pk, "refresh")


@pytest.mark.django_db
def test_login_accepts_any_spelling_of_the_uuid(api, world):
    key = world.keys[world.node_b.pk]
    for spelling in (key.upper(), f"{{{key}}}", key.replace("-", "")):
        assert login(api, spelling).status_code == 200, spelling


@pytest.mark.django_db
@pytest.mark.parametrize("api_key", ["not-a-uuid", "", 12345, None, ["x"], {"a": 1}])
def test_login_with_a_malformed_key_is_a_400(api, api_key):
    response = login(api, api_key)
    assert response.status_code == 400
    assert "api_key" in response.json()["errors"]


@pytest.mark.django_db
def test_login_body_must_be_an_object_with_the_key(api):
    assert api.post("/api/token/node", {}, format="json").status_code == 400
    assert api.post("/api/token/node", [1], format="json").status_code == 400


@pytest.mark.django_db
def test_unknown_key_is_a_401(api, world):  # noqa: ARG001 - other nodes exist
    response = login(api, str(uuid.uuid4()))
    assert response.status_code == 401
    assert response.json() == {"msg": "Api key is not recognized!"}


# The audit entry: on PostgreSQL it goes with the transaction's next statement, here after the login
# (the test's own transaction stays open), so it is not among the login's statements.
AUDIT = 0 if connection.vendor == "postgresql" else 1
# The failures of the client address, the node, then its login: spent logins cleared, the new one
# stored, and its audit entry.
LOGIN_QUERIES = 4 + AUDIT


@pytest.mark.django_db
def test_login_queries_do_not_grow_with_the_number_of_nodes(api, world, django_assert_num_queries):
    key = world.keys[world.node_c.pk]
    with django_assert_num_queries(LOGIN_QUERIES):
        assert login(api, key).status_code == 200
    org = make_org("many")
    for _ in range(40):
        make_node(org, make_collab(org))
    with django_assert_num_queries(LOGIN_QUERIES):
        assert login(api, key).status_code == 200
    # An unknown key: the failures of the address, the digest lookup, the nodes still on an imported
    # vantage6 hash (none here), the audit entry of the failed login (noted once per address and
    # minute), and the failure counted (the first of a minute also forgets the minutes gone).
    with django_assert_num_queries(6 + AUDIT):
        assert login(api, str(uuid.uuid4())).status_code == 401
    with django_assert_num_queries(5):
        assert login(api, str(uuid.uuid4())).status_code == 401


@pytest.mark.django_db
def test_validate_token(api, world):
    response = api.post("/api/token/node/validate", **bearer(world.node_b))
    assert response.status_code == 200
    assert response.json() == {
        "msg": "Token is valid", "node_id": world.node_b.pk, "name": "node-b",
        "organization_id": world.org_b.pk,
    }  # fmt: skip
    assert api.post("/api/token/node/validate", **headers_of(world.org_a, "Root")).status_code == 401
    assert api.post("/api/token/node/validate").status_code == 401


@pytest.mark.django_db
def test_recover_gives_a_new_key_and_the_old_one_stops_at_once(api, world):
    old = world.keys[world.node_a.pk]
    response = api.post("/api/recover/node", {"id": world.node_a.pk}, format="json",
                        **headers_of(world.org_a, "Organization Admin"))  # fmt: skip
    assert response.status_code == 200
    new = response.json()["api_key"]
    assert set(response.json()) == {"api_key"}
    assert str(uuid.UUID(new)) == new != old
    assert login(api, old).status_code == 401
    assert login(api, new).status_code == 200


@pytest.mark.django_db
def test_recover_errors(api, world):
    root = headers_of(world.org_a, "Root")
    assert api.post("/api/recover/node", {"id": 99999}, format="json", **root).status_code == 404
    assert api.post("/api/recover/node", {"id": 0}, format="json", **root).status_code == 400
    assert api.post("/api/recover/node", {}, format="json", **root).status_code == 400
    assert (
        api.post(
            "/api/recover/node", {"id": world.node_a.pk}, format="json", **bearer(world.node_a)
        ).status_code
        == 401
    )


@pytest.mark.django_db(transaction=True)
def test_node_start_up_over_http(live_server, world):
    """The calls of a starting node (node-protocol §3.1), with what it reads from each answer."""
    world.collab_ab.encrypted = True
    world.collab_ab.save()
    base = f"{live_server.url}/api"
    http = requests.Session()

    assert http.get(f"{base}/version").json()["version"].startswith("4.15")

    login = http.post(f"{base}/token/node", json={"api_key": world.keys[world.node_b.pk]})
    assert login.status_code == 200
    tokens = login.json()
    assert login.headers["jwt-token"] == tokens["access_token"]
    assert tokens["node_url"] == f"/api/node/{world.node_b.pk}"
    assert tokens["refresh_url"] == "/api/token/refresh"
    node_id = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]
    assert node_id == world.node_b.pk
    http.headers["Authorization"] = f"Bearer {tokens['access_token']}"

    node = http.get(f"{base}/node/{node_id}").json()
    assert node["name"] == "node-b"
    assert node["collaboration"]["id"] == world.collab_ab.pk
    assert node["organization"]["id"] == world.org_b.pk
    assert node["status"] == "offline"
    organization_id, collaboration_id = node["organization"]["id"], node["collaboration"]["id"]

    organization = http.get(f"{base}/organization/{organization_id}").json()
    assert organization["name"] == "B"
    assert organization["public_key"] == ""

    collaboration = http.get(f"{base}/collaboration/{collaboration_id}").json()
    assert collaboration["encrypted"] is True

    public_key = base64.b64encode(PEM).decode()
    patched = http.patch(f"{base}/organization/{organization_id}", json={"public_key": public_key})
    assert patched.status_code == 200
    assert patched.json()["public_key"] == public_key
    assert http.get(f"{base}/organization/{organization_id}").json()["public_key"] == public_key
    assert base64.b64decode(http.get(f"{base}/organization/{organization_id}").json()["public_key"]) == PEM

    ip = http.patch(f"{base}/node/{node_id}", json={"ip": "10.76.0.2"})
    assert ip.status_code == 200
    assert ip.json()["ip"] == "10.76.0.2"
    assert http.patch(f"{base}/node/{node_id}", json={"clear_ip": True}).json()["ip"] is None
    assert Node.objects.get(pk=node_id).last_seen is not None
