"""Error bodies a client sees: JWT failures, unreadable bodies, unknown routes and trailing slashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from django.conf import settings

from accounts.sessions import start_login


def _with_token(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _claims(user) -> dict:
    access, _ = start_login(user, "user")
    return jwt.decode(access, settings.JWT_SECRET_KEY, algorithms=["HS256"], options={"verify_sub": False})


def test_valid_token_is_accepted(api, auth):
    assert api.get("/api/rule", **auth).status_code == 200


def test_missing_authorization_header(api, db):  # noqa: ARG001
    response = api.get("/api/rule")
    assert response.status_code == 401
    assert response.json() == {"msg": "Missing Authorization Header"}


def test_expired_token(api, user):
    claims = _claims(user)
    claims["exp"] = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    token = jwt.encode(claims, settings.JWT_SECRET_KEY, algorithm="HS256")
    response = api.get("/api/rule", **_with_token(token))
    assert response.status_code == 401
    assert response.json() == {"msg": "Token has expired"}


def test_token_signed_with_another_key(api, user):
    token = jwt.encode(_claims(user), "another-key-of-at-least-32-bytes-long", algorithm="HS256")
    response = api.get("/api/rule", **_with_token(token))
    assert response.status_code == 422
    assert response.json() == {"msg": "Signature verification failed"}


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.bm90anNvbg.x"])
def test_malformed_token(api, db, token):  # noqa: ARG001
    response = api.get("/api/rule", **_with_token(token))
    assert response.status_code == 422
    assert isinstance(response.json()["msg"], str) and response.json()["msg"]


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer a b", "bearer abc"])
def test_authorization_header_not_of_the_bearer_form(api, db, header):  # noqa: ARG001
    response = api.get("/api/rule", HTTP_AUTHORIZATION=header)
    assert response.status_code == 422
    assert response.json()["msg"].startswith("Bad Authorization header")


def test_refresh_token_on_a_normal_endpoint(api, user):
    _, refresh = start_login(user, "user")
    response = api.get("/api/rule", **_with_token(refresh))
    assert response.status_code == 422
    assert response.json() == {"msg": "Only non-refresh tokens are allowed"}


def test_token_of_a_deleted_user(api, user, auth):
    pk = user.pk
    user.delete()
    response = api.get("/api/rule", **auth)
    assert response.status_code == 401
    assert response.json() == {"msg": f"Error loading the user {pk}"}


@pytest.mark.urls("tests.api.urls")
@pytest.mark.parametrize("body", ["not json", "{", '{"a": }', "\x00"])
def test_body_that_is_not_json_is_a_400(api, body):
    response = api.post("/api/test-echo", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["msg"] == "Request body is incorrect"


@pytest.mark.urls("tests.api.urls")
def test_json_body_is_read(api):
    response = api.post("/api/test-echo", data={"a": [1, 2]}, format="json")
    assert response.json() == {"received": {"a": [1, 2]}}


@pytest.mark.parametrize(
    "path", ["/api/nothing-here", "/api/rule/abc", "/api", "/elsewhere", "/api/rule/1/x"]
)
def test_unknown_route_is_a_json_404(api, auth, path):
    response = api.get(path, **auth)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "msg" in response.json()


@pytest.mark.parametrize("path", ["/api/rule/", "/api/health/", "/api/version/", "/api/rule/1/"])
def test_trailing_slash_is_a_404_not_a_redirect(api, auth, path):
    response = api.get(path, **auth)
    assert response.status_code == 404
    assert "msg" in response.json()


@pytest.mark.parametrize("host", ['"4?L EOj', "a b", "exa mple.org:80"])
@pytest.mark.parametrize("path", ["/api/version", "/api/token/user"])
def test_a_malformed_host_header_is_a_json_400(client, db, host, path):  # noqa: ARG001
    response = client.post(path, {}, content_type="application/json", HTTP_HOST=host)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["msg"].startswith("Invalid HTTP_HOST header")


@pytest.mark.parametrize(
    ("accept", "query"),
    [("text/html", ""), ("application/xml", ""), ("application/json; indent=4", ""), ("*/*", "?format=xml")],
)
def test_the_api_answers_json_whatever_the_client_accepts(api, auth, accept, query):
    """As vantage6 does: no 406 or 404 for an ``Accept`` or ``?format`` the API has no renderer for."""
    response = api.get(f"/api/rule{query}", HTTP_ACCEPT=accept, **auth)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert b"\n" not in response.content  # compact, as for every client
    assert response.json()["data"]


def test_the_api_docs_still_negotiate_their_format(client, db):  # noqa: ARG001
    assert client.get("/api/schema", HTTP_ACCEPT="application/json").json()["openapi"]
