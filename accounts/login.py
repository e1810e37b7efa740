"""Password login with lock-out, two-factor authentication, and account recovery by e-mail."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import bcrypt
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts import totp
from accounts.models import User
from accounts.permissions import Principal
from accounts.services import audit
from accounts.sessions import end_all_logins, start_login
from accounts.tokens import TokenError, reset_token, reset_token_user_id
from vantage6.api.errors import ApiError, bad_request
from vantage6.api.references import api_path

LOGIN_FAILED = "Failed to login"
MFA_MISSING = "Please include your two-factor authentication code"
MFA_WRONG = "Your two-factor authentication code is incorrect!"
MFA_SETUP = (
    "Please scan the QR code with your authenticator app (or enter the secret) and log in again with "
    "the code it shows"
)
RECOVERY_SENT = "If the username or email is in our database you will soon receive an email."
PURPOSE_PASSWORD, PURPOSE_2FA = "password-reset", "2fa-reset"


@dataclass
class LoginResult:
    """What the login endpoint answers: a body, and the access token for the ``jwt-token`` header."""

    body: dict
    access_token: str | None = None
    headers: dict = field(default_factory=dict)


def token_body(identity: object, kind: str, tokens: tuple[str, str] | None = None) -> LoginResult:
    """The token pair of a new login of a user or node (or ``tokens``, the next pair of a login),
    with the URLs the official clients follow."""
    access, refresh = tokens or start_login(identity, kind)
    body = {
        "access_token": access,
        "refresh_token": refresh,
        "refresh_url": api_path("/token/refresh"),
        f"{kind}_url": api_path(f"/{kind}/{identity.pk}"),
    }
    return LoginResult(body, access, {"jwt-token": access})


# --- lock-out --------------------------------------------------------------------------------------
def _blocked_minutes_left(user: User, now: datetime) -> int:
    """Minutes until a blocked account opens again; 0 when it is not blocked."""
    attempts = user.failed_login_attempts or 0
    if attempts < settings.PASSWORD_MAX_FAILED_ATTEMPTS or not user.last_login_attempt:
        return 0
    opens = user.last_login_attempt + timedelta(minutes=settings.PASSWORD_INACTIVATION_MINUTES)
    if now >= opens:
        return 0
    return max(1, int((opens - now).total_seconds() // 60) + 1)


def _register_failure(user: User, now: datetime) -> None:
    attempts = user.failed_login_attempts or 0
    user.failed_login_attempts = 1 if attempts >= settings.PASSWORD_MAX_FAILED_ATTEMPTS else attempts + 1
    user.last_login_attempt = now
    user.save(update_fields=["failed_login_attempts", "last_login_attempt"])


def _mail_blocked(user: User, minutes_left: int, now: datetime) -> None:
    """Tell the owner the account is blocked, at most once per PASSWORD_BETWEEN_USER_EMAILS_MINUTES."""
    pause = timedelta(minutes=settings.PASSWORD_BETWEEN_USER_EMAILS_MINUTES)
    if user.last_email_failed_login_sent and now - user.last_email_failed_login_sent < pause:
        return
    user.last_email_failed_login_sent = now
    user.save(update_fields=["last_email_failed_login_sent"])
    _mail(
        user,
        f"Failed login attempts on your vantage6 account ({settings.SERVER_NAME})",
        f"Dear {user.firstname or user.username},\n\n"
        f"There were {settings.PASSWORD_MAX_FAILED_ATTEMPTS} failed attempts to log in to your account "
        f"'{user.username}'. It is blocked for the next {minutes_left} minute(s).\n"
        f"If this was not you, please contact {settings.SUPPORT_EMAIL}.\n",
    )


def _equalise_timing(password: str) -> None:
    """Spend a bcrypt check on an unknown username too, so its answer takes as long."""
    stored = User.objects.order_by("pk").values_list("password", flat=True).first()
    if not stored or not stored.startswith("$2"):
        stored = bcrypt.hashpw(b"-", bcrypt.gensalt(rounds=settings.BCRYPT_ROUNDS)).decode()
    with contextlib.suppress(ValueError):
        bcrypt.checkpw(password.encode(), stored.encode())


def _clear_failures(user: User) -> None:
    if user.failed_login_attempts:
        user.failed_login_attempts = 0
        user.save(update_fields=["failed_login_attempts"])


def check_credentials(
    *, username: str, password: str, failure_msg: str = LOGIN_FAILED, complete: bool = True
) -> User:
    """The user with this username and password, honouring the lock-out policy (401 otherwise).

    ``complete=False``: a second factor still follows, so the failure counter is kept until it passes.
    """
    user = User.objects.filter(username=username).first()
    if user is None:
        _equalise_timing(password)
        raise ApiError(401, failure_msg)
    now = timezone.now()
    minutes_left = _blocked_minutes_left(user, now)
    if minutes_left:
        _mail_blocked(user, minutes_left, now)
        raise ApiError(401, failure_msg)
    if not user.check_password(password):
        _register_failure(user, now)
        raise ApiError(401, failure_msg)
    if complete:
        _clear_failures(user)
    return user


def _two_factor_setup(user: User) -> dict:
    user.otp_secret = totp.new_secret()
    user.save(update_fields=["otp_secret"])
    issuer = f"vantage6 ({settings.SERVER_NAME})"
    return {
        "qr_uri": totp.provisioning_uri(user.otp_secret, user.username, issuer),
        "otp_secret": user.otp_secret,
        "msg": MFA_SETUP,
    }


def authenticate_user(
    *, username: str, password: str, mfa_code: str | None, setup_allowed: bool = True
) -> User | dict:
    """The user when the credentials (and, with two-factor authentication on, the code) are right.

    A dict is a reply without tokens: the two-factor set-up or the request for a code. A wrong code
    counts as a failed attempt, so codes cannot be guessed past the lock-out. Without
    ``setup_allowed`` (the admin site) a user who has not set up two-factor authentication is refused.
    """
    user = check_credentials(username=username, password=password, complete=not settings.TWO_FACTOR_AUTH)
    if not settings.TWO_FACTOR_AUTH:
        return user
    if not user.otp_secret:
        if not setup_allowed:
            raise ApiError(401, "Set up two-factor authentication by logging in to the API first")
        _clear_failures(user)
        return _two_factor_setup(user)
    if not mfa_code:
        return {"msg": MFA_MISSING}
    if not totp.verify(user.otp_secret, mfa_code):
        _register_failure(user, timezone.now())
        raise ApiError(401, MFA_WRONG)
    _clear_failures(user)
    return user


def login(*, username: str, password: str, mfa_code: str | None = None) -> LoginResult:
    outcome = authenticate_user(username=username, password=password, mfa_code=mfa_code)
    if isinstance(outcome, dict):
        return LoginResult(outcome)
    return token_body(outcome, "user")


# --- recovery --------------------------------------------------------------------------------------
def _mail(user: User, subject: str, text: str) -> None:
    send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [user.email])


def _reset_mail_text(user: User, token: str, what: str) -> str:
    minutes = settings.EMAIL_TOKEN_VALIDITY_MINUTES
    return (
        f"Dear {user.firstname or user.username},\n\n"
        f"A {what} was requested for your vantage6 account '{user.username}' on {settings.SERVER_NAME}.\n"
        f"Use this reset token within {minutes} minutes:\n\n{token}\n\n"
        f"If you did not ask for this, you can ignore this e-mail. Questions: {settings.SUPPORT_EMAIL}\n"
    )


def password_recovery_request(*, username: str | None, email: str | None) -> None:
    """Mail a password reset token when the account exists (the answer never tells whether it does)."""
    if not settings.SMTP_CONFIGURED:
        return
    user = (
        User.objects.filter(username=username).first()
        if username
        else User.objects.filter(email=email).first()
    )
    if user is None:
        return
    now = timezone.now()
    pause = timedelta(minutes=settings.PASSWORD_BETWEEN_USER_EMAILS_MINUTES)
    if user.last_email_recover_password_sent and now - user.last_email_recover_password_sent < pause:
        return
    user.last_email_recover_password_sent = now
    user.save(update_fields=["last_email_recover_password_sent"])
    token = reset_token(user.pk, PURPOSE_PASSWORD)
    _mail(user, "Password reset for vantage6", _reset_mail_text(user, token, "password reset"))


def _user_of_reset_token(token: str, purpose: str) -> User:
    try:
        user_id = reset_token_user_id(token, purpose)
    except TokenError as exc:
        raise ApiError(exc.status, exc.msg) from None
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise bad_request("Invalid reset token")
    return user


@transaction.atomic
def password_reset(*, token: str, password: str) -> None:
    user = _user_of_reset_token(token, PURPOSE_PASSWORD)
    user.set_password(password)
    user.failed_login_attempts = 0
    user.save(update_fields=["password", "failed_login_attempts"])
    end_all_logins(user.pk)
    audit(None, "user.password_reset", user)


def two_factor_recovery_request(*, username: str, password: str) -> None:
    """Mail a two-factor reset token to the owner of these (correct) credentials."""
    if not settings.SMTP_CONFIGURED:
        raise bad_request("This server cannot send e-mail, so two-factor authentication cannot be reset")
    user = check_credentials(username=username, password=password)
    token = reset_token(user.pk, PURPOSE_2FA)
    _mail(
        user,
        "Two-factor authentication reset for vantage6",
        _reset_mail_text(user, token, "two-factor authentication reset"),
    )


@transaction.atomic
def two_factor_reset(*, token: str) -> dict:
    user = _user_of_reset_token(token, PURPOSE_2FA)
    body = _two_factor_setup(user)
    audit(None, "user.2fa_reset", user)
    return body


def password_change(*, principal: Principal, current_password: str, new_password: str) -> None:
    """Not atomic on purpose: a wrong current password must still count as a failed attempt."""
    user = check_credentials(
        username=principal.user.username,
        password=current_password,
        failure_msg="Your current password is not correct!",
    )
    if current_password == new_password:
        raise bad_request("New password cannot be the same as the current password!")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    end_all_logins(user.pk)
    audit(principal, "user.password_change", user)
