"""The admin site and the API as an attacker's browser meets them: framing, sniffing, caching, cookies,
forged posts, redirects elsewhere, and sessions that should have ended."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Role, Rule
from tests.admin.browser import CSRF, Browser
from tests.factories import PASSWORD, bearer, make_org, make_user
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db


@pytest.fixture
def root():
    return make_user(make_org("root-org"), "Root", username="root-admin")


def _pages(root) -> list[tuple[str, dict]]:
    return [
        ("/admin/", {}),
        ("/admin/login/", {}),
        (f"/admin/accounts/user/{root.pk}/change/", {}),
        ("/api/user", bearer(root)),
        (f"/api/user/{root.pk}", bearer(root)),
        ("/api/version", {}),
    ]


def test_pages_cannot_be_framed_sniffed_or_followed_by_their_address(root):
    browser = Browser(root.username)
    for path, headers in _pages(root):
        client = Client() if path == "/admin/login/" else browser.client  # a visitor's login page
        response = client.get(path, **headers)
        assert response.status_code == 200, path
        assert response["X-Frame-Options"] == "DENY", path
        assert response["X-Content-Type-Options"] == "nosniff", path
        assert response["Referrer-Policy"] == "same-origin", path


def test_pages_for_a_logged_in_user_are_not_cached(root):
    browser = Browser(root.username)
    for path, headers in _pages(root):
        if path in ("/admin/login/", "/api/version"):
            continue
        response = browser.client.get(path, **headers)
        assert "no-store" in response.get("Cache-Control", ""), path
        assert "private" in response.get("Cache-Control", ""), path


@pytest.mark.parametrize(("proto", "secure"), [("", False), ("https", True)])
def test_the_session_cookie_is_http_only_same_site_and_secure_over_tls(settings, root, proto, secure):
    settings.TRUSTED_PROXIES = []  # the peer is the proxy: X-Forwarded-Proto tells the scheme
    client = Client(enforce_csrf_checks=True)
    extra = {"HTTP_X_FORWARDED_PROTO": proto} if proto else {}
    page = client.get("/admin/login/", **extra)
    token = CSRF.search(page.content.decode()).group(1)
    response = client.post(
        "/admin/login/",
        {"username": root.username, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"},
        **extra,
    )
    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] in ("Lax", "Strict")
    assert bool(cookie["secure"]) is secure
    assert bool(response.cookies[settings.CSRF_COOKIE_NAME]["secure"]) is secure


def test_every_admin_post_needs_the_csrf_token(root, world):
    browser = Browser(root.username)
    before = _state()
    for path, data in [
        ("/admin/logout/", {}),
        (f"/admin/accounts/user/{root.pk}/change/", {"firstname": "x"}),
        ("/admin/accounts/role/add/", {"name": "forged"}),
        (f"/admin/collaborations/organization/{world.org_c.pk}/delete/", {"post": "yes"}),
        ("/admin/accounts/user/", {"action": "delete_selected", "_selected_action": [root.pk]}),
    ]:
        response = browser.client.post(path, data)
        assert response.status_code == 403, path
    assert _state() == before
    assert browser.get("/admin/").status_code == 200  # still logged in: the forged logout did nothing


@pytest.mark.parametrize(
    "target",
    ["https://evil.example", "//evil.example", "/\\evil.example", "https:evil.example", "\\\\evil.example",
     " //evil.example", "javascript:alert(1)", "http://testserver@evil.example/"],
)  # fmt: skip
def test_login_and_logout_redirect_to_this_site_only(root, target):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/", {"next": target})
    token = CSRF.search(page.content.decode()).group(1)
    login = client.post(
        f"/admin/login/?next={target}",
        {"username": root.username, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": target},
    )
    assert login.status_code == 302
    assert login["Location"].startswith("/") and not login["Location"].startswith(("//", "/\\"))
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    logout = client.post("/admin/logout/", {"next": target}, HTTP_X_CSRFTOKEN=token)
    location = logout.get("Location", "")
    assert "evil" not in location and "javascript" not in location


def test_a_session_ends_with_the_rules_that_opened_the_site(world):
    admin = make_user(world.org_a, username="admin-a")
    role = Role.objects.create(name="admins", organization=world.org_a)
    role.rules.add(Rule.objects.get(name="user", scope="ORGANIZATION", operation="EDIT"))
    admin.roles.add(role)
    browser = Browser(admin.username)
    assert browser.get("/admin/accounts/user/").status_code == 200

    role.rules.clear()

    assert browser.get("/admin/accounts/user/").status_code == 302
    assert browser.get("/admin/").status_code == 302


def test_a_user_without_admin_rules_gets_no_session(world):
    make_user(world.org_a, "Researcher", username="researcher-a")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/")
    token = CSRF.search(page.content.decode()).group(1)
    response = client.post(
        "/admin/login/", {"username": "researcher-a", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200  # the form again
    assert client.get("/admin/").status_code == 302


def test_a_session_ends_when_the_password_changes_through_the_api(api, root):
    browser = Browser(root.username)
    assert browser.get("/admin/").status_code == 200
    change = {"current_password": PASSWORD, "new_password": "Another-pass-123!"}
    assert api.patch("/api/password/change", change, format="json", **bearer(root)).status_code == 200

    assert browser.get("/admin/").status_code == 302


def test_a_session_of_a_deleted_user_ends(world):
    other_root = make_user(world.org_a, "Root", username="root-a")
    browser = Browser(other_root.username)
    assert browser.get("/admin/").status_code == 200
    other_root.delete()

    assert browser.get("/admin/").status_code == 302
