"""Password login with lock-out, two-factor authentication, and account recovery by e-mail."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar, cast

import bcrypt
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts import mail, totp
from accounts.audit import ANONYMOUS, actor_of, audit
from accounts.models import AuditAction, Authenticatable, LoginCheck, User, bcrypt_input
from accounts.permissions import Principal
from accounts.sessions import end_all_logins, start_login
from accounts.tokens import TokenError, reset_token, reset_token_claims
from vantage6.api.errors import ApiError, bad_request, too_many_requests
from vantage6.api.references import api_path
from vantage6.throttle import FailureLimiter, client_address

LOGIN_FAILED = "Failed to login"
MFA_MISSING = "Please include your two-factor authentication code"
MFA_WRONG = "Your two-factor authentication code is incorrect!"
MFA_SETUP = (
    "Please scan the QR code with your authenticator app (or enter the secret) and log in again with "
    "the code it shows"
)
RECOVERY_SENT = "If the username or email is in our database you will soon receive an email."
PURPOSE_PASSWORD, PURPOSE_2FA = "password-reset", "2fa-reset"
TOO_MANY_FAILURES = "Too many failed logins from your address; try again in {seconds} second(s)"

# Failed logins per client address (LOGIN_FAILURES_PER_MINUTE).
FAILED_LOGINS = FailureLimiter("login")
TOO_MANY_RECOVERIES = "Too many recovery requests from your address; try again in {seconds} second(s)"
# Password recovery requests per client address (RECOVERY_REQUESTS_PER_HOUR).
RECOVERY_REQUESTS = FailureLimiter("recovery", window=3600)
# The client address of the login attempt being made (set by ``failures_limited``).
_client: ContextVar[str | None] = ContextVar("login_client", default=None)


@dataclass
class LoginResult:
    """What the login endpoint answers: a body, and the access token for the ``jwt-token`` header."""

    body: dict
    access_token: str | None = None
    headers: dict = field(default_factory=dict)


def token_body(identity: Authenticatable, kind: str, tokens: tuple[str, str] | None = None) -> LoginResult:
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


# --- failed logins per client address ---------------------------------------------------------------
@contextlib.contextmanager
def failures_limited(meta: Mapping[str, str], failed_action: str) -> Iterator[None]:
    """A login attempt (user, node, admin site) by the client of a request with ``meta``.

    An address with LOGIN_FAILURES_PER_MINUTE failures (401) in the last minute is answered 429
    without any check or write (one ``failed_action`` entry per address and minute says so).
    Attempts under way at once are bounded by the request threads of the process.
    """
    client = client_address(meta, settings.TRUSTED_PROXIES)
    limit = settings.LOGIN_FAILURES_PER_MINUTE
    if seconds := FAILED_LOGINS.retry_after(client, limit):
        if FAILED_LOGINS.first(client, "refused"):
            audit(ANONYMOUS, failed_action, None, reason="too many failed logins", address=client)
        raise too_many_requests(TOO_MANY_FAILURES.format(seconds=seconds), seconds)
    token = _client.set(client)
    try:
        yield
    except ApiError as exc:
        if exc.status_code == 401:
            FAILED_LOGINS.fail(client, limit)
        raise
    finally:
        _client.reset(token)


def audit_failed_login(action: str, obj: object | None = None, *, once_per: str = "", **data: object) -> None:
    """Audit a failed login, with the client address when known. ``once_per``: a kind of failure
    (an unknown name or key, a blocked account) recorded once per client address and minute; the
    others count towards the address's limit only, so guessing cannot grow the trail at will."""
    client = _client.get()
    if client is not None:
        if once_per and not FAILED_LOGINS.first(client, once_per):
            return
        data["address"] = client
    audit(ANONYMOUS, action, obj, **data)


def name_digest(username: str) -> str:
    """Stands for a username that matches no account in the audit trail: people type passwords
    there, so the name itself is never kept; the same name gives the same digest on this server."""
    return salted_hmac("accounts.unknown-username", username, algorithm="sha256").hexdigest()[:16]


T = TypeVar("T")


# --- lock-out --------------------------------------------------------------------------------------
# A guess counts before its password is checked, as a LoginCheck, until its outcome (a failure, or
# failures forgiven) is written. A check (bcrypt) takes a fraction of a second; a guess counted longer
# ago than this was stopped with its process, and no longer counts: its outcome, if it comes, must
# find room as a new guess would. A guess refused meanwhile waits for the checks under way.
CHECKS_IN_FLIGHT_SECONDS = 2.0
IN_FLIGHT_POLL_SECONDS = 0.05


def _in_flight_since() -> datetime:
    return timezone.now() - timedelta(seconds=CHECKS_IN_FLIGHT_SECONDS)


def _locked_user(**lookup: object) -> User | None:
    """The user, its row locked until the transaction ends: the lock-out's steps of one account queue."""
    return User.objects.select_for_update(of=("self",)).filter(**lookup).first()


def _room_for_a_guess(user: User, now: datetime) -> bool:
    """Whether one more guess at the (locked) account may be checked: its failures and the checks
    under way stay below the limit. Forgets the checks of stopped processes and a block that ran out."""
    limit = settings.PASSWORD_MAX_FAILED_ATTEMPTS
    checks = LoginCheck.objects.filter(user=user)
    checks.filter(started_at__lte=_in_flight_since()).delete()
    if user.failed_login_attempts >= limit:
        reopened = now - timedelta(minutes=settings.PASSWORD_INACTIVATION_MINUTES)
        if user.last_login_attempt is not None and user.last_login_attempt > reopened:
            return False
        user.failed_login_attempts = 0  # the block ran out: the count starts afresh
    return user.failed_login_attempts + checks.count() < limit


def _count_guess(username: str) -> tuple[User, LoginCheck] | None:
    """Count a guess at the password of ``username`` before checking it; None when it is blocked.

    The lock on the account's row spans the check of the lock-out and the count, so parallel guesses
    cannot all pass the check before any of them is counted: a burst gets at most the allowed number
    checked.
    """
    now = timezone.now()
    with transaction.atomic():
        user = _locked_user(username=username)
        if user is None or not _room_for_a_guess(user, now):
            return None
        user.last_login_attempt = now
        user.save(update_fields=["failed_login_attempts", "last_login_attempt"])
        return user, LoginCheck.objects.create(user=user, started_at=now)


def _settle_guess(check: LoginCheck, *, failed: bool) -> int | None:
    """Write the outcome of a check: one failure more, or the failures forgiven. The account's
    failures then; None when the guess no longer counted and there is no room for it now."""
    now = timezone.now()
    with transaction.atomic():
        user = _locked_user(pk=check.user_id)
        if user is None:
            return None
        counted = LoginCheck.objects.filter(pk=check.pk, started_at__gt=_in_flight_since()).delete()[0]
        if not counted and not _room_for_a_guess(user, now):
            return None
        user.failed_login_attempts = user.failed_login_attempts + 1 if failed else 0
        user.last_login_attempt = now if not counted else user.last_login_attempt
        user.save(update_fields=["failed_login_attempts", "last_login_attempt"])
        return user.failed_login_attempts


def _when_checks_end(attempt: Callable[[], T | None], checks: QuerySet[LoginCheck]) -> T | None:
    """``attempt``, again while ``checks`` of the account are under way, until it succeeds: a check
    holds its count until it ends, and a right password forgives the failures, so a burst of right
    passwords passes in turn. Gives up once no check counted within ``CHECKS_IN_FLIGHT_SECONDS`` is left."""
    while (outcome := attempt()) is None and checks.filter(started_at__gt=_in_flight_since()).exists():
        time.sleep(IN_FLIGHT_POLL_SECONDS)
    return outcome


def _guess(username: str) -> tuple[User, LoginCheck] | None:
    """A counted guess at the account of ``username``, once there is room for it."""
    return _when_checks_end(
        lambda: _count_guess(username), LoginCheck.objects.filter(user__username=username)
    )


def _outcome(check: LoginCheck, *, failed: bool) -> int | None:
    """The outcome of a check written (``_settle_guess``), once there is room for it if needed."""
    checks = LoginCheck.objects.filter(user_id=check.user_id)
    return _when_checks_end(lambda: _settle_guess(check, failed=failed), checks)


def _login_failed(username: str, user: User | None, reason: str, failures: int = 0) -> None:
    """Audit a refused login; the guess whose ``failures`` reach the limit also records the lock-out."""
    if user is None:
        digest = name_digest(username)
        audit_failed_login(AuditAction.USER_LOGIN_FAILED, reason=reason, name_digest=digest, once_per=reason)
        return
    once_per = f"locked {user.pk}" if reason == "locked" else ""
    audit_failed_login(AuditAction.USER_LOGIN_FAILED, user, reason=reason, once_per=once_per)
    if failures == settings.PASSWORD_MAX_FAILED_ATTEMPTS:
        audit(ANONYMOUS, AuditAction.USER_LOCK_OUT, user, attempts=failures)


def _mail_blocked(user: User, now: datetime) -> None:
    """Tell the owner the account is blocked, at most once per PASSWORD_BETWEEN_USER_EMAILS_MINUTES."""
    pause = timedelta(minutes=settings.PASSWORD_BETWEEN_USER_EMAILS_MINUTES)
    due = Q(last_email_failed_login_sent__isnull=True) | Q(last_email_failed_login_sent__lte=now - pause)
    if not User.objects.filter(due, pk=user.pk).update(last_email_failed_login_sent=now):
        return
    opens = cast(datetime, user.last_login_attempt) + timedelta(
        minutes=settings.PASSWORD_INACTIVATION_MINUTES
    )
    minutes_left = max(1, int((opens - now).total_seconds() // 60) + 1)
    _mail(
        user,
        f"Failed login attempts on your vantage6 account ({settings.SERVER_NAME})",
        f"Dear {user.firstname or user.username},\n\n"
        f"There were {settings.PASSWORD_MAX_FAILED_ATTEMPTS} failed attempts to log in to your account "
        f"'{user.username}'. It is blocked for the next {minutes_left} minute(s).\n"
        f"If this was not you, please contact {settings.SUPPORT_EMAIL}.\n",
    )


def _stand_in_hash(rounds: int) -> bytes:
    """A bcrypt hash of ``rounds`` (all-zero salt and digest) that no password matches in practice:
    checking a guess against it costs what a user's hash of those rounds costs, and making it costs
    nothing (a hash made with ``hashpw`` on first use doubled the first such answer of a process)."""
    return b"$2b$%02d$%s" % (rounds, b"." * 53)


def _equalise_timing(password: str, user: User | None) -> None:
    """A bcrypt check as costly as that of ``user`` (unknown: a new hash), for an answer that needs
    none, so unknown and blocked accounts answer as late as a wrong password does."""
    try:
        rounds = int(user.password.split("$")[2])  # type: ignore[union-attr]  # no user: AttributeError
    except (AttributeError, IndexError, ValueError):  # no user, or no bcrypt hash
        rounds = settings.BCRYPT_ROUNDS
    with contextlib.suppress(ValueError):
        bcrypt.checkpw(bcrypt_input(password), _stand_in_hash(rounds))


def _checked_password(username: str, password: str, failure_msg: str) -> tuple[User, LoginCheck]:
    """The user with this username and password, and the check of the guess, still counted (401
    otherwise, the guess a failure). Unknown, blocked and wrong get one answer, each after a bcrypt
    check of the same cost."""
    counted = _guess(username)
    if counted is None:
        user = User.objects.filter(username=username).first()
        _equalise_timing(password, user)
        if user is not None:
            _mail_blocked(user, timezone.now())
        _login_failed(username, user, "unknown user" if user is None else "locked")
        raise ApiError(401, failure_msg)
    user, check = counted
    if not user.check_password(password):
        _failed(user, check, "password", failure_msg)
    return user, check


def _failed(user: User, check: LoginCheck, reason: str, msg: str) -> NoReturn:
    """A wrong password or code: a failure (401 ``msg``), or a refusal as blocked when it came too late."""
    failures = _outcome(check, failed=True)
    if failures is None:
        _login_failed(user.username, user, "locked")
        raise ApiError(401, LOGIN_FAILED if msg == MFA_WRONG else msg)
    _login_failed(user.username, user, reason, failures)
    raise ApiError(401, msg)


def _passed(user: User, check: LoginCheck, failure_msg: str) -> None:
    """Right credentials: the failures forgiven, or a refusal as blocked when they came too late."""
    if _outcome(check, failed=False) is None:
        _login_failed(user.username, user, "locked")
        raise ApiError(401, failure_msg)


def check_credentials(*, username: str, password: str, failure_msg: str = LOGIN_FAILED) -> User:
    """The user with this username and password, honouring the lock-out policy (401 otherwise)."""
    user, check = _checked_password(username, password, failure_msg)
    _passed(user, check, failure_msg)
    return user


def _two_factor_setup(user: User) -> dict:
    user.otp_secret = totp.new_secret()
    user.otp_last_step = None
    user.save(update_fields=["otp_secret", "otp_last_step"])
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
    counts as a failed attempt (the one counted with the password), so codes cannot be guessed past
    the lock-out, and a code is accepted once. Without ``setup_allowed`` (the admin site) a user who
    has not set up two-factor authentication is refused.
    """
    user, check = _checked_password(username, password, LOGIN_FAILED)
    if not settings.TWO_FACTOR_AUTH:
        _passed(user, check, LOGIN_FAILED)
        audit(actor_of(user), AuditAction.USER_LOGIN, user)
        return user
    if not user.otp_secret:
        if not setup_allowed:
            check.delete()  # no failed attempt
            raise ApiError(401, "Set up two-factor authentication by logging in to the API first")
        _passed(user, check, LOGIN_FAILED)
        return _two_factor_setup(user)
    if not mfa_code:
        check.delete()  # the password was right, no code was tried: no failed attempt
        return {"msg": MFA_MISSING}
    if not _accept_code(user, mfa_code):
        _failed(user, check, "two-factor code", MFA_WRONG)
    _passed(user, check, LOGIN_FAILED)
    audit(actor_of(user), AuditAction.USER_LOGIN, user)
    return user


def _accept_code(user: User, code: str) -> bool:
    """Whether ``code`` is a current code of the user, of a time step not used before.

    The step is recorded in the same conditional UPDATE, so parallel requests cannot share a code.
    """
    step = totp.matching_step(cast(str, user.otp_secret), code)  # set up before any code is asked
    if step is None:
        return False
    unused = Q(otp_last_step__isnull=True) | Q(otp_last_step__lt=step)
    return User.objects.filter(unused, pk=user.pk).update(otp_last_step=step) == 1


def login(*, username: str, password: str, mfa_code: str | None = None) -> LoginResult:
    outcome = authenticate_user(username=username, password=password, mfa_code=mfa_code)
    if isinstance(outcome, dict):
        return LoginResult(outcome)
    return token_body(outcome, "user")


# --- recovery --------------------------------------------------------------------------------------
def _mail(user: User, subject: str, text: str) -> None:
    mail.send_later(user.email, subject, text)


IGNORE_IF_UNASKED = "you can ignore this e-mail"
# A two-factor reset is asked for with the password: whoever asked knows it.
PASSWORD_KNOWN_IF_UNASKED = "someone knows your password: change it at once"


def _reset_mail_text(user: User, token: str, what: str, if_unasked: str = IGNORE_IF_UNASKED) -> str:
    minutes = settings.EMAIL_TOKEN_VALIDITY_MINUTES
    return (
        f"Dear {user.firstname or user.username},\n\n"
        f"A {what} was requested for your vantage6 account '{user.username}' on {settings.SERVER_NAME}.\n"
        f"Use this reset token within {minutes} minutes:\n\n{token}\n\n"
        f"If you did not ask for this, {if_unasked}. Questions: {settings.SUPPORT_EMAIL}\n"
    )


def _credentials_fingerprint(user: User) -> str:
    """Changes with the password hash, the two-factor secret or the e-mail address, and so voids earlier
    reset tokens: a token mailed to an address the account no longer has must not reset it."""
    credentials = f"{user.password}\n{user.otp_secret or ''}\n{user.email}"
    return salted_hmac(
        "accounts.reset-token", credentials, secret=settings.JWT_SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def issue_reset_token(user: User, purpose: str) -> str:
    """A reset token of ``purpose`` that works once, and only while the credentials stay the same."""
    return reset_token(user.pk, purpose, _credentials_fingerprint(user))


def password_recovery_request(meta: Mapping[str, str], *, username: str | None, email: str | None) -> None:
    """Mail a password reset token when the account exists (the answer never tells whether it does).

    The mail leaves after the answer, so known and unknown accounts answer alike, in time too. Each
    client address may ask RECOVERY_REQUESTS_PER_HOUR times, for any account or none (so that the
    429 tells nothing either): one address cannot have every account it knows of mailed.
    """
    client = client_address(meta, settings.TRUSTED_PROXIES)
    if seconds := RECOVERY_REQUESTS.attempt(client, settings.RECOVERY_REQUESTS_PER_HOUR):
        raise too_many_requests(TOO_MANY_RECOVERIES.format(seconds=seconds), seconds)
    if not settings.SMTP_CONFIGURED:
        return
    account = Q(username=username) if username else Q(email=email)
    now = timezone.now()
    pause = timedelta(minutes=settings.PASSWORD_BETWEEN_USER_EMAILS_MINUTES)
    due = Q(last_email_recover_password_sent__isnull=True) | Q(
        last_email_recover_password_sent__lte=now - pause
    )
    not_held = Q(recovery_held_until__isnull=True) | Q(recovery_held_until__lte=now)
    if not User.objects.filter(account, due, not_held).update(last_email_recover_password_sent=now):
        return  # unknown, mailed a short while ago, or held after a change of the address
    user = User.objects.filter(account).first()
    if user is None:  # deleted meanwhile
        return
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    _mail(user, "Password reset for vantage6", _reset_mail_text(user, token, "password reset"))


def _user_of_reset_token(token: str, purpose: str) -> User:
    """The user of a valid reset token, locked until the reset is written (so it works once)."""
    try:
        user_id, fingerprint = reset_token_claims(token, purpose)
    except TokenError as exc:
        raise ApiError(exc.status, exc.msg) from None
    user = User.objects.select_for_update().filter(pk=user_id).first()
    if user is None or not constant_time_compare(fingerprint, _credentials_fingerprint(user)):
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
    """Mail a two-factor reset token to the owner of these (correct) credentials; a wrong password
    counts as a failed login, a right one leaves the failures as they are."""
    if not settings.SMTP_CONFIGURED:
        raise bad_request("This server cannot send e-mail, so two-factor authentication cannot be reset")
    user, check = _checked_password(username, password, LOGIN_FAILED)
    # The password alone forgives no failures: codes guessed at login stay counted (as when a login
    # brings the right password without a code).
    check.delete()
    # The caller knows the password, so the answer may say why: the second factor is what stands
    # between a stolen access token and password and the account, and the new address may be the thief's.
    if user.recovery_held_until is not None and user.recovery_held_until > timezone.now():
        raise bad_request(
            "Two-factor authentication cannot be reset by e-mail for a while after the account's e-mail "
            f"address changed; contact {settings.SUPPORT_EMAIL}"
        )
    token = issue_reset_token(user, PURPOSE_2FA)
    _mail(
        user,
        "Two-factor authentication reset for vantage6",
        _reset_mail_text(user, token, "two-factor authentication reset", PASSWORD_KNOWN_IF_UNASKED),
    )


@transaction.atomic
def two_factor_reset(*, token: str) -> dict:
    user = _user_of_reset_token(token, PURPOSE_2FA)
    body = _two_factor_setup(user)
    # The old factor may be in other hands (a lost phone): the logins made with it end, as with a password.
    end_all_logins(user.pk)
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
