"""A two-factor reset is what a user does when the old second factor is no longer theirs alone (a lost or
stolen phone, a copied secret). The logins made with it end with it, as the logins made with a password
end when it is changed or reset: whoever logged in with the old factor keeps no access token and no
refresh token to go on with."""

from __future__ import annotations

import pytest

from accounts import totp
from accounts.login import PURPOSE_2FA, issue_reset_token
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def test_a_two_factor_reset_ends_the_logins_made_with_the_old_factor(api, world, settings):
    settings.TWO_FACTOR_AUTH = True
    user = make_user(world.org_a, "Viewer")
    user.otp_secret = totp.new_secret()
    user.save(update_fields=["otp_secret"])
    credentials = {"username": user.username, "password": PASSWORD, "mfa_code": totp.totp(user.otp_secret)}
    thief = api.post("/api/token/user", credentials, format="json").json()
    access = {"HTTP_AUTHORIZATION": f"Bearer {thief['access_token']}"}
    assert api.get(f"/api/user/{user.pk}", **access).status_code == 200

    # The owner, with the password and the mailbox, resets the second factor.
    reset = api.post(
        "/api/recover/2fa/reset", {"reset_token": issue_reset_token(user, PURPOSE_2FA)}, format="json"
    )

    assert reset.status_code == 200
    assert api.get(f"/api/user/{user.pk}", **access).status_code == 401
    refreshed = api.post("/api/token/refresh", HTTP_AUTHORIZATION=f"Bearer {thief['refresh_token']}")
    assert refreshed.status_code == 401
    # The owner logs in with the new factor.
    code = totp.totp(reset.json()["otp_secret"])
    assert api.post("/api/token/user", {**credentials, "mfa_code": code}, format="json").status_code == 200
