"""A hostile page visited by a logged-in administrator: the browser sends the admin's cookies with a
login form it posts and with a Socket.IO connection it opens; neither gets anything from them."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from nodes.consumers import handshake_auth
from tests.admin.browser import Browser
from tests.factories import PASSWORD, bearer, make_org, make_user
from tests.realtime.helpers import in_memory
from vantage6.socketio.server import Namespace, Server

pytestmark = pytest.mark.django_db

EVIL = "https://evil.example"


@pytest.fixture
def root():
    return make_user(make_org("root-org"), "Root", username="root-admin")


def test_a_login_form_posted_from_another_site_starts_no_session(root):
    # Login CSRF: the page would log the admin's browser in to an account of the attacker's choosing.
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/admin/login/", {"username": root.username, "password": PASSWORD}, HTTP_ORIGIN=EVIL
    )
    assert response.status_code == 403
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db(
    transaction=True
)  # the handshake's check runs as a socket's: it closes stale connections
def test_a_socket_opened_with_the_admins_cookies_is_anonymous(root):
    browser = Browser(root.username)
    cookies = "; ".join(f"{name}={morsel.value}" for name, morsel in browser.client.cookies.items())
    assert settings.SESSION_COOKIE_NAME in cookies
    server = Server(namespaces={"/tasks": Namespace()}, authenticate=handshake_auth)

    def opened(headers: dict):
        return in_memory(lambda: server.open_session("polling", headers))[0]

    hijack = opened({"cookie": cookies, "origin": EVIL})
    assert hijack.auth == {}
    assert hijack.expires_at is not None  # ends at the first ping timeout, joins no room
    # Only a token authenticates a socket.
    own = opened({"authorization": bearer(root)["HTTP_AUTHORIZATION"]})
    assert own.auth["claims"]["sub"] == root.pk
    assert own.expires_at is None
