"""Password and two-factor recovery by e-mail, and the password change of a logged-in user."""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings

from accounts import totp
from accounts.login import PURPOSE_2FA, PURPOSE_PASSWORD, issue_reset_token
from accounts.models import User
from accounts.tokens import AccessToken
from tests.accounts.conftest import SlowMailBackend, delivered, login, median_seconds, minutes_ago
from tests.factories import PASSWORD, bearer, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Brand-new1"
SENT = {"msg": "If the username or email is in our database you will soon receive an email."}


def mailed_token(message) -> str:
    return re.search(r"^(ey\S+)$", message.body, re.MULTILINE).group(1)


# --- recover/lost and recover/reset -----------------------------------------------------------------
@pytest.mark.parametrize("by", ["username", "email"])
@pytest.mark.usefixtures("smtp")
def test_lost_password_mails_a_reset_token(api, user, mailoutbox, by):
    value = user.username if by == "username" else user.email
    response = api.post("/api/recover/lost", {by: value}, format="json")
    assert response.status_code == 200
    assert response.json() == SENT
    assert len(delivered(mailoutbox)) == 1 and mailoutbox[0].to == [user.email]
    user.refresh_from_db()
    assert user.last_email_recover_password_sent is not None

    token = mailed_token(mailoutbox[0])
    reset = api.post("/api/recover/reset", {"reset_token": token, "password": NEW_PASSWORD}, format="json")
    assert reset.status_code == 200
    assert login(api, password=NEW_PASSWORD).status_code == 200
    assert login(api).status_code == 401


@pytest.mark.usefixtures("user", "smtp")
def test_lost_password_answers_the_same_for_unknown_accounts(api, mailoutbox):
    response = api.post("/api/recover/lost", {"username": "nobody"}, format="json")
    assert response.status_code == 200
    assert response.json() == SENT
    assert delivered(mailoutbox) == []


@pytest.mark.usefixtures("smtp")
def test_lost_password_answers_alike_in_time(api, org, mailoutbox, settings):
    """The mail leaves after the answer, so a slow mail server does not tell who has an account."""
    settings.EMAIL_BACKEND = f"{SlowMailBackend.__module__}.{SlowMailBackend.__name__}"
    users = iter([make_user(org) for _ in range(3)])

    def ask(username: str):
        response = api.post("/api/recover/lost", {"username": username}, format="json")
        assert (response.status_code, response.json()) == (200, SENT)

    times = median_seconds({"known": lambda: ask(next(users).username), "unknown": lambda: ask("nobody")}, 3)

    assert max(times.values()) < SlowMailBackend.DELAY / 2, times
    assert len(delivered(mailoutbox)) == 3


@pytest.mark.usefixtures("smtp")
def test_lost_password_mail_is_rate_limited(api, user, mailoutbox):
    for _ in range(3):
        api.post("/api/recover/lost", {"email": user.email}, format="json")
    assert len(delivered(mailoutbox)) == 1
    User.objects.filter(pk=user.pk).update(
        last_email_recover_password_sent=minutes_ago(settings.PASSWORD_BETWEEN_USER_EMAILS_MINUTES + 1)
    )
    api.post("/api/recover/lost", {"email": user.email}, format="json")
    assert len(delivered(mailoutbox)) == 2


def test_lost_password_without_smtp_sends_nothing(api, user, mailoutbox):
    response = api.post("/api/recover/lost", {"username": user.username}, format="json")
    assert response.status_code == 200
    assert delivered(mailoutbox) == []


@pytest.mark.parametrize("body", [{}, {"email": "not-an-email"}, {"username": "a" * 129}, []])
@pytest.mark.usefixtures("user")
def test_lost_password_body_is_validated(api, body):
    response = api.post("/api/recover/lost", body, format="json")
    assert response.status_code == 400
    assert response.json()["msg"] == "Request body is incorrect"


def test_reset_unblocks_the_account(api, user):
    User.objects.filter(pk=user.pk).update(failed_login_attempts=5, last_login_attempt=minutes_ago(1))
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    response = api.post("/api/recover/reset", {"reset_token": token, "password": NEW_PASSWORD}, format="json")
    assert response.status_code == 200
    assert login(api, password=NEW_PASSWORD).status_code == 200


def reset(api, token: str, password: str):
    return api.post("/api/recover/reset", {"reset_token": token, "password": password}, format="json")


def test_a_reset_token_works_once(api, user):
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    assert reset(api, token, NEW_PASSWORD).status_code == 200
    again = reset(api, token, "Another-one2")
    assert again.status_code == 400
    assert again.json() == {"msg": "Invalid reset token"}
    assert login(api, password=NEW_PASSWORD).status_code == 200
    assert login(api, password="Another-one2").status_code == 401


@pytest.mark.parametrize("purpose", [PURPOSE_PASSWORD, PURPOSE_2FA])
def test_reset_tokens_die_when_the_password_changes(api, user, purpose):
    token = issue_reset_token(user, purpose)
    assert change(api, user, PASSWORD, NEW_PASSWORD).status_code == 200
    if purpose == PURPOSE_PASSWORD:
        response = reset(api, token, "Another-one2")
    else:
        response = api.post("/api/recover/2fa/reset", {"reset_token": token}, format="json")
    assert response.status_code == 400
    assert response.json() == {"msg": "Invalid reset token"}
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD) and user.otp_secret is None


@pytest.mark.usefixtures("two_factor")
def test_reset_tokens_die_when_the_two_factor_secret_changes(api, user):
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    assert set(login(api).json()) == {"qr_uri", "otp_secret", "msg"}  # the secret is set up
    assert reset(api, token, NEW_PASSWORD).status_code == 400
    assert login(api, password=NEW_PASSWORD).status_code == 401


def test_reset_applies_the_password_policy(api, user):
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    response = api.post("/api/recover/reset", {"reset_token": token, "password": "short"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["errors"]
    assert login(api).status_code == 200


def test_reset_refuses_other_tokens(api, user):
    for token in [
        "not-a-token",
        issue_reset_token(user, PURPOSE_2FA),  # a token of the other purpose
        str(AccessToken(user.pk, "user")),  # an API token
    ]:
        response = api.post(
            "/api/recover/reset", {"reset_token": token, "password": NEW_PASSWORD}, format="json"
        )
        assert response.status_code == 400, token
    assert login(api).status_code == 200


def test_expired_reset_token_is_a_401(api, user):
    from accounts import tokens

    token = tokens._ResetToken({"id": str(user.pk)}, "container", purpose="password-reset")
    token.payload["exp"] = int(time.time()) - 1
    response = api.post(
        "/api/recover/reset", {"reset_token": str(token), "password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 401
    assert response.json() == {"msg": "Token has expired"}


# --- two-factor recovery ---------------------------------------------------------------------------------
@pytest.mark.usefixtures("user")
def test_two_factor_recovery_needs_smtp(api):
    response = api.post("/api/recover/2fa/lost", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 400


@pytest.mark.usefixtures("smtp")
def test_two_factor_recovery_checks_the_password_like_login(api, user, mailoutbox):
    response = api.post("/api/recover/2fa/lost", {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert response.json() == {"msg": "Failed to login"}
    user.refresh_from_db()
    assert user.failed_login_attempts == 1
    assert delivered(mailoutbox) == []


@pytest.mark.usefixtures("smtp", "two_factor")
def test_two_factor_reset_gives_a_new_secret(api, user, mailoutbox):
    old_secret = login(api).json()["otp_secret"]
    response = api.post("/api/recover/2fa/lost", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = mailed_token(delivered(mailoutbox)[0])
    # the two-factor token cannot reset the password
    assert (
        api.post(
            "/api/recover/reset", {"reset_token": token, "password": NEW_PASSWORD}, format="json"
        ).status_code
        == 400
    )
    reset = api.post("/api/recover/2fa/reset", {"reset_token": token}, format="json")
    assert reset.status_code == 200
    body = reset.json()
    assert set(body) == {"qr_uri", "otp_secret", "msg"}
    assert body["otp_secret"] != old_secret
    user.refresh_from_db()
    assert user.otp_secret == body["otp_secret"]
    assert login(api, mfa_code=totp.totp(body["otp_secret"])).status_code == 200
    # the token was used up with the old secret
    again = api.post("/api/recover/2fa/reset", {"reset_token": token}, format="json")
    assert again.status_code == 400
    assert User.objects.get(pk=user.pk).otp_secret == body["otp_secret"]


def test_two_factor_reset_refuses_bad_tokens(api, user):
    for token in ["garbage", issue_reset_token(user, PURPOSE_PASSWORD)]:
        assert api.post("/api/recover/2fa/reset", {"reset_token": token}, format="json").status_code == 400


def test_a_reset_token_does_not_open_the_api(api, user):
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    response = api.get("/api/user", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 422


# --- password change ---------------------------------------------------------------------------------------
def change(api, user, current: str, new: str):
    body = {"current_password": current, "new_password": new}
    return api.patch("/api/password/change", body, format="json", **bearer(user))


def test_password_change(api, user):
    response = change(api, user, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200
    assert login(api, password=NEW_PASSWORD).status_code == 200


def test_password_change_with_a_wrong_current_password_counts_as_a_failure(api, user):
    response = change(api, user, "wrong", NEW_PASSWORD)
    assert response.status_code == 401
    user.refresh_from_db()
    assert user.failed_login_attempts == 1


def test_password_change_is_blocked_by_the_lock_out(api, user):
    User.objects.filter(pk=user.pk).update(
        failed_login_attempts=settings.PASSWORD_MAX_FAILED_ATTEMPTS, last_login_attempt=minutes_ago(1)
    )
    assert change(api, user, PASSWORD, NEW_PASSWORD).status_code == 401
    assert login(api, password=NEW_PASSWORD).status_code == 401


@pytest.mark.parametrize(
    ("new", "complaint"),
    [
        ("Sh0rt!", "between 8 and 128"),
        ("nouppercase1!", "uppercase"),
        ("NOLOWERCASE1!", "lowercase"),
        ("NoDigits!!", "digit"),
        ("NoSpecial11", "special"),
        ("Long1!" + "a" * 123, "between 8 and 128"),
    ],
)
def test_password_policy(api, user, new, complaint):
    response = change(api, user, PASSWORD, new)
    assert response.status_code == 400
    assert any(complaint in message for message in response.json()["errors"]["new_password"])


def test_new_password_must_differ(api, user):
    response = change(api, user, PASSWORD, PASSWORD)
    assert response.status_code == 400
    assert response.json() == {"msg": "New password cannot be the same as the current password!"}
