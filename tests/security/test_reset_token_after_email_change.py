"""A password or two-factor reset token goes to the account's e-mail address. Someone reading that mailbox
(the reason the address is being changed, say) asks for a token; the owner, or an administrator, then
moves the account to a new address. The token mailed to the old address no longer resets anything."""

from __future__ import annotations

import re

import pytest

from tests.accounts.conftest import delivered
from tests.factories import PASSWORD, bearer, make_user

pytestmark = pytest.mark.django_db


def _mailed_token(message) -> str:
    return re.search(r"^(ey\S+)$", message.body, re.MULTILINE).group(1)


@pytest.mark.parametrize("changed_by", ["the owner", "an administrator"])
def test_a_reset_token_mailed_to_the_old_address_is_void_once_the_address_changed(
    api, world, settings, mailoutbox, changed_by
):
    settings.SMTP_CONFIGURED = True
    user = make_user(world.org_a, "Viewer")
    old_address = user.email
    assert api.post("/api/recover/lost", {"email": old_address}, format="json").status_code == 200
    (mail,) = [message for message in delivered(mailoutbox) if message.to == [old_address]]
    token = _mailed_token(mail)

    editor = user if changed_by == "the owner" else make_user(world.org_a, "Organization Admin")
    moved = api.patch(f"/api/user/{user.pk}", {"email": "new@example.org"}, format="json", **bearer(editor))
    assert moved.status_code == 200, moved.json()

    reset = api.post("/api/recover/reset", {"reset_token": token, "password": "Taken-over1!"}, format="json")
    assert reset.status_code == 400
    assert reset.json() == {"msg": "Invalid reset token"}
    login = {"username": user.username, "password": PASSWORD}
    assert api.post("/api/token/user", login, format="json").status_code == 200
