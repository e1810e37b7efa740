"""Tokens used where they do not belong, forged, or outliving what they stand for: each is refused, and
the refused request changes nothing."""

from __future__ import annotations

import base64
import json
import math
import time
import uuid

import jwt
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.login import PURPOSE_PASSWORD, issue_reset_token
from accounts.models import LoginSession, Role, Rule, User
from accounts.sessions import TOKEN_REVOKED
from accounts.tokens import login_tokens
from tasks.models import AlgorithmPort
from tests.factories import PASSWORD, bearer, make_task, make_user
from tests.tasks.conftest import container_headers_from
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db


def login(api, username: str) -> dict:
    response = api.post("/api/token/user", {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def signed(claims: dict, *, key: str | None = None, algorithm: str = "HS256", **headers: object) -> str:
    return jwt.encode(claims, key or settings.JWT_SECRET_KEY, algorithm=algorithm, headers=headers or None)


FORGERIES = {
    "alg none": lambda c: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(c)}.",
    "alg HS512": lambda c: signed(c, algorithm="HS512"),
    "alg RS256": lambda c: f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(c)}.{_b64(b'x' * 256)}",
    "previous secret": lambda c: signed(c, key="the-secret-of-last-year-0123456789abcdef"),
    "future nbf": lambda c: signed({**c, "nbf": int(time.time()) + 3600}),
    "future iat": lambda c: signed({**c, "iat": int(time.time()) + 3600, "nbf": int(time.time())}),
    "no type": lambda c: signed({k: v for k, v in c.items() if k != "type"}),
    "no sub": lambda c: signed({k: v for k, v in c.items() if k != "sub"}),
    "no client_type": lambda c: signed({k: v for k, v in c.items() if k != "client_type"}),
    "no login": lambda c: signed({k: v for k, v in c.items() if k not in ("sid", "gen")}),
    "a node's client_type": lambda c: signed({**c, "client_type": "node"}),
    "a container's client_type": lambda c: signed({**c, "client_type": "container"}),
    "sub as text": lambda c: signed({**c, "sub": str(c["sub"])}),
    "sub as true": lambda c: signed({**c, "sub": True}),
    "sub beyond the ids": lambda c: signed({**c, "sub": 2**63}),
    "sub negative": lambda c: signed({**c, "sub": -(10**30)}),
    "client_type as a list": lambda c: signed({**c, "client_type": ["user"]}),
    "client_type as an object": lambda c: signed({**c, "client_type": {"user": 1}}),
    "type refresh": lambda c: signed({**c, "type": "refresh"}),
    "no exp": lambda c: signed({k: v for k, v in c.items() if k != "exp"}),
    "exp as null": lambda c: signed({**c, "exp": None}),
    "exp as text": lambda c: signed({**c, "exp": str(c["exp"])}),
    "iat as text": lambda c: signed({**c, "iat": str(c["iat"])}),
    "nbf as text": lambda c: signed({**c, "nbf": str(c["nbf"])}),
    "exp infinite": lambda c: signed({**c, "exp": math.inf}),
    "iat as a list": lambda c: signed({**c, "iat": [c["iat"]]}),
    "nbf as an object": lambda c: signed({**c, "nbf": {"at": c["nbf"]}}),
    "nbf infinite": lambda c: signed({**c, "nbf": -math.inf}),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_or_altered_token_is_refused(api, world, forgery):
    make_user(world.org_a, "Root", username="root-a")
    claims = claims_of(login(api, "root-a")["access_token"])
    before = _state()

    response = api.get("/api/user", **auth(FORGERIES[forgery](claims)))

    assert response.status_code in (401, 422), response.content
    assert set(response.json()) == {"msg"}
    assert _state() == before


def test_a_kid_header_chooses_no_key(api, world):
    # The key is this server's alone: a kid naming another is ignored, the signature decides.
    make_user(world.org_a, "Root", username="root-a")
    claims = claims_of(login(api, "root-a")["access_token"])
    other = signed(claims, key="another-key-0123456789abcdef0123456789", kid="../../dev/null")
    assert api.get("/api/user", **auth(other)).status_code == 422
    assert api.get("/api/user", **auth(signed(claims, kid="anything"))).status_code == 200


@pytest.mark.parametrize("key", ["task_id", "node_id", "organization_id", "collaboration_id"])
@pytest.mark.parametrize("value", [math.inf, [1], {"id": 1}, None, "1; --", 2**70])
def test_a_container_token_naming_its_ids_oddly_is_refused(api, world, key, value):
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    claims = claims_of(container_headers_from(api, world.node_a, task)["HTTP_AUTHORIZATION"].split()[1])
    odd = auth(signed({**claims, "sub": {**claims["sub"], key: value}}))
    before = _state()
    for method, path in [("get", "/api/run"), ("get", f"/api/task/{task.pk}"), ("post", "/api/task")]:
        response = getattr(api, method)(path, {}, format="json", **odd)
        assert response.status_code in (401, 422), (method, path, response.content)
    assert _state() == before


# --- the wrong kind of token -----------------------------------------------------------------------
def test_tokens_of_one_kind_do_not_open_the_endpoints_of_another(api, world):
    make_user(world.org_a, "Root", username="root-a")
    tokens = login(api, "root-a")
    node = bearer(world.node_a)
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    container = container_headers_from(api, world.node_a, task)
    reset = auth(issue_reset_token(User.objects.get(username="root-a"), PURPOSE_PASSWORD))
    before = _state()
    refused = [
        ("get", "/api/user", auth(tokens["refresh_token"])),  # a refresh token as an access token
        ("post", "/api/token/refresh", auth(tokens["access_token"])),  # and the reverse
        ("post", "/api/token/user/validate", node),
        ("post", "/api/token/user/validate", container),
        ("post", "/api/token/node/validate", auth(tokens["access_token"])),
        ("post", "/api/token/node/validate", container),
        ("patch", "/api/password/change", container),
        ("get", "/api/user", container),
        ("get", "/api/role", container),
        ("post", "/api/token/container", container),
        ("post", "/api/token/container", auth(tokens["access_token"])),
        ("get", "/api/vpn/algorithm/addresses", node),
        ("get", "/api/vpn/algorithm/addresses", auth(tokens["access_token"])),
        ("post", "/api/recover/node", node),
        ("post", "/api/recover/node", container),
        ("post", "/api/token/revoke", container),
        ("post", "/api/token/refresh", container),
        ("post", "/api/token/refresh", reset),  # a mailed reset token, as a refresh token
        ("post", "/api/token/user/validate", reset),
        ("post", "/api/token/revoke", reset),
    ]
    for method, path, headers in refused:
        response = getattr(api, method)(path, {}, format="json", **headers)
        assert response.status_code in (401, 422), (method, path, response.content)
    assert _state() == before


# --- a container beyond its task -------------------------------------------------------------------
def test_a_container_reads_nothing_of_other_collaborations(api, world):
    task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    container = container_headers_from(api, world.node_a, task)
    other = make_task(world.collab_c, world.org_c, world.org_c)
    other_run = other.runs.get()
    AlgorithmPort.objects.create(run=other_run, port=4444, label="c-port")
    for path in (f"/api/task/{other.pk}", f"/api/run/{other_run.pk}", f"/api/result/{other_run.pk}",
                 f"/api/collaboration/{world.collab_c.pk}", f"/api/organization/{world.org_c.pk}",
                 f"/api/node/{world.node_c.pk}"):  # fmt: skip
        assert api.get(path, **container).status_code == 401, path
    hidden = {
        "task": other.pk, "run": other_run.pk, "result": other_run.pk, "collaboration": world.collab_c.pk,
        "node": world.node_c.pk, "organization": world.org_c.pk, "study": None,
    }  # fmt: skip
    for name, pk in hidden.items():
        body = api.get(f"/api/{name}?per_page=100", **container).json()
        assert pk not in {row["id"] for row in body.get("data", [])}, name  # a 401 shows nothing either
        assert "c-port" not in json.dumps(body)
    addresses = api.get("/api/vpn/algorithm/addresses?include_children=1&include_parent=1", **container)
    assert "c-port" not in addresses.content.decode()


# --- identities that changed or are gone ---------------------------------------------------------------
def test_tokens_of_deleted_users_nodes_and_organizations_stop_working(api, world):
    make_user(world.org_a, "Root", username="root-a")
    root = auth(login(api, "root-a")["access_token"])
    make_user(world.org_b, "Viewer", username="viewer-b")
    viewer_tokens = login(api, "viewer-b")
    viewer = auth(viewer_tokens["access_token"])
    viewer_reset = issue_reset_token(User.objects.get(username="viewer-b"), PURPOSE_PASSWORD)
    node = bearer(world.node_c)
    assert api.get("/api/organization", **viewer).status_code == 200
    assert api.post("/api/token/node/validate", **node).status_code == 200

    assert api.delete(f"/api/node/{world.node_c.pk}", **root).status_code == 200
    assert api.delete(f"/api/organization/{world.org_b.pk}?delete_dependents=1", **root).status_code == 200

    assert api.get("/api/organization", **viewer).status_code == 401
    assert api.post("/api/token/refresh", **auth(viewer_tokens["refresh_token"])).status_code == 401
    reset = {"reset_token": viewer_reset, "password": "Brand-new1"}
    assert api.post("/api/recover/reset", reset, format="json").status_code == 400
    assert not User.objects.filter(username="viewer-b").exists()
    assert api.post("/api/token/node/validate", **node).status_code == 401


def test_rules_taken_from_a_role_end_on_the_next_request(api, world):
    role = Role.objects.create(name="readers", organization=world.org_a)
    role.rules.add(Rule.objects.get(name="user", scope="ORGANIZATION", operation="VIEW"))
    make_user(world.org_a, username="reader").roles.add(role)
    reader = auth(login(api, "reader")["access_token"])
    assert api.get("/api/user", **reader).status_code == 200

    role.rules.clear()

    assert api.get("/api/user", **reader).status_code == 401


# --- logins this server does not know ------------------------------------------------------------------
def _login_tokens_elsewhere(identity) -> str:
    """A token as another server sharing this one's key (or this one before its database was restored)
    signs it: right identity and generation, a login this database never had."""
    kind = "user" if isinstance(identity, User) else "node"
    identity.refresh_from_db(fields=["token_generation"])
    access, _refresh = login_tokens(
        identity.pk, kind, [], generation=identity.token_generation, session_id=uuid.uuid4().hex,
        refresh_jti=uuid.uuid4().hex, ends=None,
    )  # fmt: skip
    return access


UNKNOWN_LOGIN_REQUESTS = [
    ("user", "get", "/api/user"),
    ("user", "post", "/api/token/user/validate"),
    ("user", "post", "/api/token/revoke"),
    ("node", "get", "/api/organization"),
    ("node", "post", "/api/token/node/validate"),
]


@pytest.mark.parametrize(("kind", "method", "path"), UNKNOWN_LOGIN_REQUESTS)
def test_a_token_of_a_login_this_server_never_started_is_refused(api, world, kind, method, path):
    identity = make_user(world.org_a, "Root", username="root-a") if kind == "user" else world.node_a
    assert api.get("/api/version", **bearer(identity)).status_code == 200  # its own logins work
    before = _state()

    response = getattr(api, method)(path, {}, format="json", **auth(_login_tokens_elsewhere(identity)))

    assert (response.status_code, response.json()) == (401, {"msg": TOKEN_REVOKED})
    assert _state() == before


def test_a_token_used_before_stops_when_its_login_ends(api, world):
    # The token's signature and its login are checked once per process; its login's end still counts.
    make_user(world.org_a, "Root", username="root-a")
    tokens = [login(api, "root-a")["access_token"] for _ in range(2)]
    for token in tokens:
        assert api.get("/api/user", **auth(token)).status_code == 200
        assert api.get("/api/user", **auth(token)).status_code == 200

    assert api.post("/api/token/revoke", **auth(tokens[0])).status_code == 200

    assert api.get("/api/user", **auth(tokens[0])).json() == {"msg": TOKEN_REVOKED}
    assert api.get("/api/user", **auth(tokens[1])).status_code == 200


LOGIN_LOOKUP = 'SELECT 1 AS "a" FROM "login_session"'


def test_a_login_started_by_another_process_is_looked_up_once(api, world):
    user = make_user(world.org_a, "Root", username="root-a")
    elsewhere = LoginSession.objects.create(id=uuid.uuid4().hex, identity=user, refresh_jti=uuid.uuid4().hex)
    access, _refresh = login_tokens(
        user.pk, "user", [], generation=user.token_generation, session_id=elsewhere.id,
        refresh_jti=elsewhere.refresh_jti, ends=None,
    )  # fmt: skip
    lookups = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            assert api.post("/api/token/user/validate", **auth(access)).status_code == 200
        lookups.append(sum(query["sql"].startswith(LOGIN_LOOKUP) for query in queries))

    assert lookups == [1, 0, 0]
