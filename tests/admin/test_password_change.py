"""The admin site's own password change (``/admin/password_change/``) under the rules of
``PATCH /api/password/change``: the policy, the lock-out, the end of every login, the audit trail."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, User
from tests.admin.browser import Browser
from tests.factories import PASSWORD, bearer, make_user
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db

PAGE = "/admin/password_change/"
NEW_PASSWORD = "Another-pass1!"

REFUSED = {
    "a password against the policy": (PASSWORD, "abc", b"between 8 and 128 characters"),
    "a password beyond 72 bytes": (PASSWORD, "Aa1!" + "x" * 80, b"at most 72 bytes"),
    "the same password again": (PASSWORD, PASSWORD, b"cannot be the same"),
}


def _change(browser: Browser, current: str, new: str):
    return browser.post(PAGE, {"old_password": current, "new_password1": new, "new_password2": new})


@pytest.fixture
def admin_user(world):
    return make_user(world.org_a, "Organization Admin", username="org-admin")


@pytest.mark.parametrize(("current", "new", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_change_is_a_form_error_that_changes_nothing(admin_user, current, new, message):
    browser = Browser("org-admin")
    before = _state()

    response = _change(browser, current, new)

    assert response.status_code == 200 and message in response.content
    assert _state() == before
    assert User.objects.get(pk=admin_user.pk).check_password(PASSWORD)


def test_a_wrong_current_password_counts_towards_the_lock_out(admin_user):
    browser = Browser("org-admin")

    response = _change(browser, "Wrong-pass1!", NEW_PASSWORD)

    assert response.status_code == 200 and b"Your current password is not correct!" in response.content
    user = User.objects.get(pk=admin_user.pk)
    assert (user.failed_login_attempts, user.check_password(PASSWORD)) == (1, True)


def test_a_change_ends_the_api_logins_is_audited_and_keeps_the_session(api, admin_user):
    headers = bearer(admin_user)
    browser = Browser("org-admin")

    response = _change(browser, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/admin/password_change/done/"
    assert User.objects.get(pk=admin_user.pk).check_password(NEW_PASSWORD)
    assert api.get("/api/user", **headers).status_code == 401
    assert AuditEntry.objects.filter(action="user.password_change", object_id=admin_user.pk).count() == 1
    assert browser.get("/admin/").status_code == 200
