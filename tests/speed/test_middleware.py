"""The admin site's middleware (sessions, CSRF, logged-in user, messages) stays off the API proper."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_user
from vantage6.api.middleware import _api_only_path

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path, api_only",
    [
        ("/api/user", True),
        ("/api/version", True),
        ("/api/task/5/status", True),
        ("/api/docs", False),
        ("/api/schema", False),
        ("/admin/", False),
        ("/admin/login/", False),
        ("/static/admin/css/base.css", False),
        ("/socket.io/", False),
        ("/", False),
    ],
)
def test_which_paths_are_the_api_proper(path, api_only):
    assert _api_only_path(path) is api_only


def test_the_admin_and_the_docs_still_get_their_csrf_cookie(client):
    assert "csrftoken" in client.get("/admin/login/").cookies
    assert "csrftoken" in client.get("/api/docs").cookies


def test_an_admin_session_changes_nothing_on_the_api(client, world):
    admin = make_user(world.org_a, "Root")
    client.force_login(admin)
    answer = client.get("/api/organization", **bearer(admin))
    assert answer.status_code == 200
    assert not answer.cookies
    assert "Cookie" not in answer.get("Vary", "")
    assert client.get("/admin/").status_code == 200  # the session still logs into the admin
