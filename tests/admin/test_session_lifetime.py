"""An admin session ends when an API login would: ``V6_SESSION_MAX_HOURS`` after the password was given."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.backends import db as session_store
from django.utils import timezone

from tests.admin.browser import Browser
from tests.factories import make_org, make_user


@pytest.mark.django_db
def test_an_admin_session_ends_after_the_longest_login(monkeypatch):
    browser = Browser(make_user(make_org(), "Root").username)
    assert browser.get("/admin/").status_code == 200
    cookie = browser.client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_MAX_LIFETIME.total_seconds()

    later = timezone.now() + settings.SESSION_MAX_LIFETIME + timedelta(minutes=1)
    monkeypatch.setattr(session_store.timezone, "now", lambda: later)

    response = browser.get("/admin/")
    assert (response.status_code, response["Location"]) == (302, "/admin/login/?next=/admin/")
