"""A configured CORS origin is matched whole: an origin that only starts, ends or looks like it is another
site, whose pages read nothing. And no answer lets a page of another origin send credentials: the API
takes a bearer token, never the cookie a browser sends on its own."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

ALLOWED = "https://ui.example.org"
LOOKALIKES = [
    "https://ui.example.org.evil.com",
    "https://ui.example.org:8443",
    "http://ui.example.org",
    "https://ui.example.or",
    "https://evil-ui.example.org",
    "https://UI.example.org.evil.com",
    "HTTPS://UI.EXAMPLE.ORG",  # no browser sends the allowed origin so: written by hand
    "https://ui.example.org/",
    "https://ui.example.org:443",
    "null",
]


@pytest.fixture
def restricted(settings):
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]
    return APIClient()  # built after the change: middleware reads the setting when first used


@pytest.mark.parametrize("origin", LOOKALIKES)
def test_an_origin_that_only_looks_like_the_configured_one_reads_nothing(restricted, auth, origin):
    answer = restricted.get("/api/rule", HTTP_ORIGIN=origin, **auth)
    preflight = restricted.options(
        "/api/rule",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )

    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Methods" not in preflight
    assert "Access-Control-Allow-Headers" not in preflight


@pytest.mark.parametrize(
    "configured", [["*"], [ALLOWED], [ALLOWED, "*"]], ids=["any origin", "one origin", "a list with any"]
)
def test_no_answer_lets_another_origin_send_credentials(settings, auth, configured):
    settings.CORS_ALLOWED_ORIGINS = configured
    client = APIClient()

    answers = [
        client.get("/api/rule", HTTP_ORIGIN=ALLOWED, **auth),
        client.get("/api/rule", HTTP_ORIGIN=ALLOWED),  # 401
        client.options("/api/rule", HTTP_ORIGIN=ALLOWED, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"),
    ]

    assert [answer.has_header("Access-Control-Allow-Origin") for answer in answers] == [True] * 3
    assert [answer.has_header("Access-Control-Allow-Credentials") for answer in answers] == [False] * 3


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/api/docs"])
def test_the_admin_and_docs_preflight_as_the_api(restricted, db, path):  # noqa: ARG001
    """The admin's pages authenticate by cookie: a page of another origin may not read them, and not
    even the allowed origin may send the cookie along."""
    asks = {"HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "cookie"}
    other = restricted.options(path, HTTP_ORIGIN="https://evil.example", **asks)
    allowed = restricted.options(path, HTTP_ORIGIN=ALLOWED, **asks)
    page = restricted.get(path, HTTP_ORIGIN="https://evil.example")

    assert not any(name.startswith("Access-Control-Allow") for name, _ in other.items())
    assert not any(name.startswith("Access-Control-Allow") for name, _ in page.items())
    assert allowed["Access-Control-Allow-Origin"] == ALLOWED
    assert not allowed.has_header("Access-Control-Allow-Credentials")
