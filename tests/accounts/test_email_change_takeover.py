"""A user may change their own e-mail address with an access token alone, and password recovery mails a
reset token to the address on record. A stolen access token (valid for hours) must not become the account
for good: move the address to the thief's mailbox, recover, set a new password, and the owner is out.

After a change by the owner, recovery by e-mail waits (answered as for an unknown account), the owner's
other logins end and the old address is told; an administrator's change holds nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import totp
from accounts.catalogue import ORG_ADMIN
from accounts.models import LoginSession, User
from accounts.permissions import principal_for_user
from accounts.services import user_update
from accounts.sessions import logins_ended, start_login
from tests.accounts.conftest import delivered
from tests.accounts.test_admin import _user_form
from tests.admin.browser import Browser
from tests.factories import PASSWORD, bearer, make_user

# Committed: the notice to the old address goes out on commit.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("smtp")]

THIEF = "thief@example.net"
SENT = {"msg": "If the username or email is in our database you will soon receive an email."}
NEW_PASSWORD = "Taken-over1!"


def _to(outbox: list, address: str) -> list:
    return [message for message in delivered(outbox) if message.to == [address]]


def _mailed_token(message) -> str:
    return re.search(r"^(ey\S+)$", message.body, re.MULTILINE).group(1)


def _take_over(api, user: User, stolen: dict, mailoutbox: list, recover_by: str) -> list:
    """The thief's sequence; the reset tokens that reached the thief's mailbox."""
    moved = api.patch(f"/api/user/{user.pk}", {"email": THIEF}, format="json", **stolen)
    assert moved.status_code == 200, moved.json()
    asked = {"email": THIEF} if recover_by == "email" else {"username": user.username}
    recovery = api.post("/api/recover/lost", asked, format="json")
    assert (recovery.status_code, recovery.json()) == (200, SENT)
    tokens = [_mailed_token(message) for message in _to(mailoutbox, THIEF)]
    for token in tokens:
        reset = {"reset_token": token, "password": NEW_PASSWORD}
        assert api.post("/api/recover/reset", reset, format="json").status_code == 200
    return tokens


@pytest.mark.parametrize("recover_by", ["email", "username"])
def test_a_stolen_access_token_cannot_move_the_account_to_the_thiefs_mailbox(
    api, world, mailoutbox, recover_by
):
    user = make_user(world.org_a, "Viewer")
    old_address = user.email

    assert _take_over(api, user, bearer(user), mailoutbox, recover_by) == []

    login = {"username": user.username, "password": PASSWORD}
    assert api.post("/api/token/user", login, format="json").status_code == 200
    stolen = {"username": user.username, "password": NEW_PASSWORD}
    assert api.post("/api/token/user", stolen, format="json").status_code == 401
    (notice,) = _to(mailoutbox, old_address)
    assert user.username in notice.body and "support" in notice.body


def test_the_owners_other_logins_end_and_the_changing_login_goes_on(api, world):
    user = make_user(world.org_a, "Viewer")
    other_access, other_refresh = start_login(user, "user")
    changing = bearer(user)

    moved = api.patch(f"/api/user/{user.pk}", {"email": "moved@example.org"}, format="json", **changing)
    assert moved.status_code == 200, moved.json()

    ended = api.get(f"/api/user/{user.pk}", HTTP_AUTHORIZATION=f"Bearer {other_access}")
    assert (ended.status_code, ended.json()) == (401, {"msg": "Token has been revoked"})
    refresh = api.post("/api/token/refresh", HTTP_AUTHORIZATION=f"Bearer {other_refresh}")
    assert refresh.status_code == 401
    assert api.get(f"/api/user/{user.pk}", **changing).json()["email"] == "moved@example.org"


def test_the_other_logins_end_in_one_go(api, world):
    """One signal names every ended login: their sockets are checked again once, not once per login
    (each check waits for every server process to confirm)."""
    user = make_user(world.org_a, "Viewer")
    others = [start_login(user, "user")[0] for _ in range(3)]
    sent: list[dict] = []

    def record(**kwargs: object) -> None:
        sent.append(kwargs)

    logins_ended.connect(record)
    try:
        moved = api.patch(
            f"/api/user/{user.pk}", {"email": "moved@example.org"}, format="json", **bearer(user)
        )
    finally:
        logins_ended.disconnect(record)

    assert moved.status_code == 200, moved.json()
    assert len(sent) == 1
    ended = LoginSession.objects.filter(identity_id=user.pk, revoked_at__isnull=False)
    assert (sent[0]["identity_id"], sorted(sent[0]["logins"])) == (
        user.pk,
        sorted(ended.values_list("pk", flat=True)),
    )
    assert len(sent[0]["logins"]) == 3
    for access in others:
        assert api.get(f"/api/user/{user.pk}", HTTP_AUTHORIZATION=f"Bearer {access}").status_code == 401


def test_recovery_is_answered_as_for_an_unknown_account_while_held(api, world, mailoutbox):
    """No oracle: a held account and no account give the same answer, and neither gets mail."""
    user = make_user(world.org_a, "Viewer")
    api.patch(f"/api/user/{user.pk}", {"email": THIEF}, format="json", **bearer(user))

    held = api.post("/api/recover/lost", {"email": THIEF}, format="json")
    unknown = api.post("/api/recover/lost", {"email": "nobody@example.net"}, format="json")
    assert (held.status_code, held.json()) == (unknown.status_code, unknown.json()) == (200, SENT)
    assert _to(mailoutbox, THIEF) == []


def test_recovery_works_again_once_the_hold_is_over(api, world, mailoutbox, settings):
    user = make_user(world.org_a, "Viewer")
    api.patch(f"/api/user/{user.pk}", {"email": "moved@example.org"}, format="json", **bearer(user))
    held_until = User.objects.get(pk=user.pk).recovery_held_until
    expected = timezone.now() + timedelta(hours=settings.EMAIL_CHANGE_RECOVERY_HOLD_HOURS)
    assert abs(held_until - expected) < timedelta(minutes=1)

    User.objects.filter(pk=user.pk).update(recovery_held_until=timezone.now() - timedelta(seconds=1))
    api.post("/api/recover/lost", {"email": "moved@example.org"}, format="json")
    assert len(_to(mailoutbox, "moved@example.org")) == 1


def test_an_administrators_change_holds_nothing_and_lifts_a_hold(api, world, mailoutbox):
    user = make_user(world.org_a, "Viewer")
    admin = make_user(world.org_a, ORG_ADMIN)
    users_login = bearer(user)
    api.patch(f"/api/user/{user.pk}", {"email": "first@example.org"}, format="json", **users_login)

    moved = api.patch(f"/api/user/{user.pk}", {"email": "fixed@example.org"}, format="json", **bearer(admin))
    assert moved.status_code == 200, moved.json()

    api.post("/api/recover/lost", {"email": "fixed@example.org"}, format="json")
    assert len(_to(mailoutbox, "fixed@example.org")) == 1
    assert len(_to(mailoutbox, "first@example.org")) == 1  # told of the administrator's change
    assert api.get(f"/api/user/{user.pk}", **users_login).status_code == 200  # no login ended


def test_a_refused_change_tells_nobody_and_holds_nothing(api, world, mailoutbox):
    user = make_user(world.org_a, "Viewer")
    taken = make_user(world.org_a).email
    refused = api.patch(f"/api/user/{user.pk}", {"email": taken}, format="json", **bearer(user))
    assert refused.status_code == 400
    assert User.objects.get(pk=user.pk).recovery_held_until is None
    assert delivered(mailoutbox) == []


def test_a_stolen_access_token_and_password_cannot_reset_the_second_factor_to_the_thiefs_mailbox(
    api, world, mailoutbox, settings
):
    """The thief knows the password (phished) and holds an access token, not the owner's phone."""
    settings.TWO_FACTOR_AUTH = True
    user = make_user(world.org_a, "Viewer")
    User.objects.filter(pk=user.pk).update(otp_secret=totp.new_secret())
    credentials = {"username": user.username, "password": PASSWORD}
    api.patch(f"/api/user/{user.pk}", {"email": THIEF}, format="json", **bearer(user))

    asked = api.post("/api/recover/2fa/lost", credentials, format="json")

    assert asked.status_code == 400
    assert "e-mail address changed" in asked.json()["msg"]
    assert _to(mailoutbox, THIEF) == []
    User.objects.filter(pk=user.pk).update(recovery_held_until=timezone.now() - timedelta(seconds=1))
    assert api.post("/api/recover/2fa/lost", credentials, format="json").status_code == 200
    assert len(_to(mailoutbox, THIEF)) == 1


def test_a_concurrent_update_of_other_fields_does_not_lift_the_hold(api, world, mailoutbox):
    """The thief's other request, whose user was loaded before the change of the address, writes only
    what it changes: it cannot write back the account as it was before the hold."""
    user = make_user(world.org_a, "Viewer")
    loaded_before = User.objects.get(pk=user.pk)
    api.patch(f"/api/user/{user.pk}", {"email": THIEF}, format="json", **bearer(user))

    user_update(principal=principal_for_user(loaded_before), user=loaded_before, data={"firstname": "x"})

    assert User.objects.get(pk=user.pk).recovery_held_until is not None
    assert User.objects.get(pk=user.pk).email == THIEF
    api.post("/api/recover/lost", {"email": THIEF}, format="json")
    assert _to(mailoutbox, THIEF) == []


def test_the_admin_sites_change_tells_the_old_address_once(world, mailoutbox):
    """The admin site runs a change once to check it (rolled back) and once to save it: only what is
    committed is told."""
    make_user(world.org_a, ORG_ADMIN, username="org-admin")
    colleague = make_user(world.org_a, "Viewer")
    old_address = colleague.email

    page = f"/admin/accounts/user/{colleague.pk}/change/"
    response = Browser("org-admin").post(page, _user_form(colleague, email="moved@example.org"))

    assert response.status_code == 302
    assert len(_to(mailoutbox, old_address)) == 1


def test_an_admin_form_refused_after_the_address_tells_nobody(world, mailoutbox):
    """One's own address and one's own password in one form: the password is refused, so the address
    stays, and its owner must not read that it changed."""
    me = make_user(world.org_a, ORG_ADMIN, username="org-admin")
    old_address = me.email

    page = f"/admin/accounts/user/{me.pk}/change/"
    form = _user_form(me, email="moved@example.org", new_password=NEW_PASSWORD)
    response = Browser("org-admin").post(page, form)

    assert response.status_code == 200  # the form again, with the refusal
    assert User.objects.get(pk=me.pk).email == old_address
    assert _to(mailoutbox, old_address) == []
