"""CORS: every origin by default, a configured list otherwise; preflight requests are answered. A configured
origin is matched whole: an origin that only starts, ends or looks like it is another site, whose pages read
nothing. And no answer lets a page of another origin send credentials: the API takes a bearer token, never
the cookie a browser sends on its own."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from rest_framework.test import APIClient

ORIGIN = "https://ui.example.org"
OTHER_ORIGINS = [
    "https://evil.example.com",
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


def _preflight(client: APIClient, origin: str) -> HttpResponse:
    """A browser's preflight of a POST with a token from a page of ``origin``."""
    return client.options(
        "/api/rule",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def test_simple_request_from_any_origin(api, auth):
    response = api.get("/api/rule", HTTP_ORIGIN=ORIGIN, **auth)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["access-control-expose-headers"] == "total-count, Link"


def test_error_responses_carry_the_cors_header_too(api, db):  # noqa: ARG001
    response = api.get("/api/rule", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("origin", [None, ORIGIN, "https://another.example"], ids=["none", "one", "another"])
def test_under_any_origin_every_answer_fits_every_origin(api, auth, origin):
    """A shared cache that keeps an answer asked without Origin (or by another page) and gives it to a page
    gives one the page can read: the same header on each, so no Vary by Origin is needed."""
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    answers = [
        api.get("/api/rule", **headers, **auth),
        api.get("/api/rule", **headers),  # 401
        api.get("/api/rule/999999", **headers, **auth),  # 404
        api.get("/api/version", **headers),
        api.options("/api/rule", **headers, **auth),
        # With an Origin, a preflight.
        api.options("/api/rule", **headers, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"),
        api.get("/admin/login/", **headers),
        api.get("/api/docs", **headers),
    ]

    preflight = 200 if origin else 401  # without an Origin, an OPTIONS without a token
    assert [answer.status_code for answer in answers] == [200, 401, 404, 200, 200, preflight, 200, 200]
    assert [answer["Access-Control-Allow-Origin"] for answer in answers] == ["*"] * len(answers)
    assert not any("Origin" in answer.get("Vary", "") for answer in answers)


def test_preflight_needs_no_token(api, db):  # noqa: ARG001
    response = _preflight(api, ORIGIN)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert {"GET", "POST", "PATCH", "DELETE"} <= {
        method.strip() for method in response["Access-Control-Allow-Methods"].split(",")
    }
    assert response["Access-Control-Allow-Headers"] == "authorization, content-type"


@pytest.fixture
def restricted(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    return APIClient()  # built after the change: middleware reads the setting when first used


def test_configured_origin_is_echoed(restricted, auth):
    response = restricted.get("/api/rule", HTTP_ORIGIN=ORIGIN, **auth)
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response["Vary"]


def test_configured_origin_keeps_what_else_the_answer_varies_by(restricted, db):  # noqa: ARG001
    response = restricted.get("/admin/login/", HTTP_ORIGIN=ORIGIN)  # its CSRF cookie: Vary: Cookie
    assert response.status_code == 200
    assert {"Cookie", "Origin"} <= {field.strip() for field in response["Vary"].split(",")}


@pytest.mark.parametrize("origin", OTHER_ORIGINS)
def test_another_origin_reads_nothing(restricted, auth, origin):
    answer = restricted.get("/api/rule", HTTP_ORIGIN=origin, **auth)
    preflight = _preflight(restricted, origin)

    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer
    assert "Access-Control-Allow-Origin" not in preflight
    assert "Access-Control-Allow-Methods" not in preflight
    assert "Access-Control-Allow-Headers" not in preflight


@pytest.mark.parametrize("origin", [None, "https://evil.example.com", ORIGIN.upper(), ORIGIN + "/", "null"])
def test_an_answer_allowing_no_origin_still_varies_by_it(restricted, auth, origin):
    """A shared cache keyed without the Origin would hand an answer without the CORS header to the allowed
    origin (or, were it the other way round, the allowed origin's answer to any other)."""
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    for response in (
        restricted.get("/api/rule", **headers, **auth),
        restricted.get("/api/version", **headers),
        restricted.options("/api/rule", **headers, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"),
    ):
        assert "Access-Control-Allow-Origin" not in response
        assert "Origin" in {field.strip() for field in response.get("Vary", "").split(",")}


@pytest.mark.parametrize(
    "configured", [["*"], [ORIGIN], [ORIGIN, "*"]], ids=["any origin", "one origin", "a list with any"]
)
def test_no_answer_lets_another_origin_send_credentials(settings, auth, configured):
    settings.CORS_ALLOWED_ORIGINS = configured
    client = APIClient()

    answers = [
        client.get("/api/rule", HTTP_ORIGIN=ORIGIN, **auth),
        client.get("/api/rule", HTTP_ORIGIN=ORIGIN),  # 401
        client.options("/api/rule", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"),
    ]

    assert [answer.has_header("Access-Control-Allow-Origin") for answer in answers] == [True] * 3
    assert [answer.has_header("Access-Control-Allow-Credentials") for answer in answers] == [False] * 3


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/api/docs"])
def test_the_admin_and_docs_preflight_as_the_api(restricted, db, path):  # noqa: ARG001
    """The admin's pages authenticate by cookie: a page of another origin may not read them, and not
    even the allowed origin may send the cookie along."""
    asks = {"HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "cookie"}
    other = restricted.options(path, HTTP_ORIGIN="https://evil.example", **asks)
    allowed = restricted.options(path, HTTP_ORIGIN=ORIGIN, **asks)
    page = restricted.get(path, HTTP_ORIGIN="https://evil.example")

    assert not any(name.startswith("Access-Control-Allow") for name, _ in other.items())
    assert not any(name.startswith("Access-Control-Allow") for name, _ in page.items())
    assert allowed["Access-Control-Allow-Origin"] == ORIGIN
    assert not allowed.has_header("Access-Control-Allow-Credentials")
