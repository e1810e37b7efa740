"""A two-factor code is accepted within one time step of the server's clock (a phone's drift), and each
step once: a code seen a minute ago, or one of a step further off, does not log in."""

from __future__ import annotations

import time

import pytest

from accounts import totp
from tests.accounts.conftest import login

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("user", "two_factor")]


def _secret(api) -> str:
    return login(api).json()["otp_secret"]  # the first login sets up the second factor


# Steps of the past two or more behind; of the future three or more ahead, as the server may reach
# the next step before it checks.
@pytest.mark.parametrize("offset", [-120, -60, 90, 120], ids=lambda offset: f"{offset:+d} s")
def test_a_code_of_a_step_further_off_than_one_does_not_log_in(api, offset):
    secret = _secret(api)
    code = totp.totp(secret, time.time() + offset)
    if code in {totp.totp(secret, time.time() + near) for near in (-30, 0, 30)}:
        pytest.skip("the far step's code happens to equal a near one's")

    refused = login(api, mfa_code=code)

    assert refused.status_code == 401
    assert "access_token" not in refused.json()
    assert login(api, mfa_code=totp.totp(secret)).status_code == 200


def test_a_code_logs_in_once(api):
    secret = _secret(api)
    code = totp.totp(secret)

    assert login(api, mfa_code=code).status_code == 200
    replayed = login(api, mfa_code=code)

    assert replayed.status_code == 401
    assert "access_token" not in replayed.json()
