"""Someone who knows the password and not the two-factor code: guesses at the code stay counted whatever
other door the password opens, and the owner hears of it."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from accounts import totp
from accounts.models import User
from tests.accounts.conftest import delivered, login
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _wrong_codes(secret: str):
    """Codes that match none of the steps accepted now or in the next minute."""
    valid = {totp.totp(secret, time.time() + drift) for drift in range(-60, 91, 30)}
    return (code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in valid)


def _resets(outbox: list) -> list:
    return [message for message in outbox if message.subject.startswith("Two-factor authentication reset")]


@pytest.mark.usefixtures("smtp", "two_factor")
def test_asking_for_a_two_factor_reset_does_not_forgive_the_codes_guessed(api, user, mailoutbox):
    secret = login(api).json()["otp_secret"]
    guesses = _wrong_codes(secret)
    allowed = settings.PASSWORD_MAX_FAILED_ATTEMPTS
    for _ in range(allowed - 1):
        assert login(api, mfa_code=next(guesses)).status_code == 401

    # The password alone is right: the reset is mailed, the guesses at the code still count.
    lost = api.post("/api/recover/2fa/lost", {"username": "alice", "password": PASSWORD}, format="json")
    assert lost.status_code == 200
    assert len(_resets(delivered(mailoutbox))) == 1
    assert User.objects.get(pk=user.pk).failed_login_attempts == allowed - 1

    assert login(api, mfa_code=next(guesses)).status_code == 401
    blocked = login(api, mfa_code=totp.totp(secret))
    assert blocked.status_code == 401
    assert "access_token" not in blocked.json()
    # and a blocked account gets no reset mailed either
    again = api.post("/api/recover/2fa/lost", {"username": "alice", "password": PASSWORD}, format="json")
    assert again.status_code == 401
    assert len(_resets(delivered(mailoutbox))) == 1


@pytest.mark.usefixtures("user", "smtp", "two_factor")
def test_a_two_factor_reset_mail_tells_the_owner_the_password_is_known(api, mailoutbox):
    lost = api.post("/api/recover/2fa/lost", {"username": "alice", "password": PASSWORD}, format="json")
    assert lost.status_code == 200
    (mailed,) = _resets(delivered(mailoutbox))
    assert "If you did not ask for this, someone knows your password: change it at once" in mailed.body
    assert "ignore" not in mailed.body


@pytest.mark.parametrize(
    "code",
    [
        "\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic
        "\u00b2" * 6,  # superscript two
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth
    ],
)
@pytest.mark.usefixtures("two_factor")
def test_a_code_of_other_digits_is_a_wrong_code(api, user, code):
    # Digits of other scripts are digits to Python, not to the code check.
    login(api)  # sets up the secret
    response = login(api, mfa_code=code)
    assert response.status_code == 401
    assert response.json() == {"msg": "Your two-factor authentication code is incorrect!"}
    assert User.objects.get(pk=user.pk).failed_login_attempts == 1
