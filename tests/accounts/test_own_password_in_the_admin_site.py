"""The admin site's user page sets a password without asking for the current one. On one's own page
that turned a session alone (a stolen cookie, a browser left open) into the account for good: set a
new password, and the owner is out. One's own password changes on the password change page, which
asks for the current one, as ``PATCH /api/password/change`` does."""

from __future__ import annotations

import pytest

from accounts.catalogue import ORG_ADMIN, VIEWER
from accounts.models import User
from tests.accounts.test_admin import _user_form
from tests.admin.browser import Browser
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

TAKEN_OVER = "Taken-over1!"


def test_ones_own_password_is_not_set_without_the_current_one(world):
    me = make_user(world.org_a, ORG_ADMIN, username="org-admin")
    browser = Browser("org-admin")

    response = browser.post(f"/admin/accounts/user/{me.pk}/change/", _user_form(me, new_password=TAKEN_OVER))

    assert response.status_code == 200  # the form again, with the refusal
    assert b"Change your own password with your current password" in response.content
    assert User.objects.get(pk=me.pk).check_password(PASSWORD)


def test_another_users_password_is_still_set_by_their_administrator(world):
    make_user(world.org_a, ORG_ADMIN, username="org-admin")
    colleague = make_user(world.org_a, VIEWER)
    browser = Browser("org-admin")

    page = f"/admin/accounts/user/{colleague.pk}/change/"
    response = browser.post(page, _user_form(colleague, new_password=TAKEN_OVER))

    assert response.status_code == 302
    assert User.objects.get(pk=colleague.pk).check_password(TAKEN_OVER)
