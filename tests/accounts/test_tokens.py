"""User login (lock-out, two-factor authentication), token refresh, expiry and validation."""

from __future__ import annotations

import time

import bcrypt
import jwt
import pytest
from django.conf import settings

from accounts import totp
from accounts.login import PURPOSE_PASSWORD, issue_reset_token
from accounts.models import User
from accounts.tokens import AccessToken
from tests.accounts.conftest import delivered, login, median_seconds, minutes_ago
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db


def early_in_a_time_step() -> None:
    """Wait for a fresh 30 s step when the current one is about to end, so codes stay valid."""
    left = totp.STEP_SECONDS - time.time() % totp.STEP_SECONDS
    if left < 5:
        time.sleep(left + 0.1)


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# --- password login -----------------------------------------------------------------------------------
def test_login_gives_tokens_urls_and_the_jwt_header(api, user):
    response = login(api)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "refresh_url", "user_url"}
    assert body["refresh_url"] == "/api/token/refresh"
    assert body["user_url"] == f"/api/user/{user.pk}"
    assert response["jwt-token"] == body["access_token"]
    access, refresh = claims(body["access_token"]), claims(body["refresh_token"])
    assert access["sub"] == user.pk and access["type"] == "access" and access["client_type"] == "user"
    assert access["roles"] == ["Viewer"]
    assert refresh["type"] == "refresh"
    # the token works on the API
    me = api.get(f"/api/user/{user.pk}", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert me.status_code == 200


def test_login_urls_follow_the_api_path(api, user, settings):
    settings.API_PATH = "/v6"
    body = login(api).json()
    assert body["refresh_url"] == "/v6/token/refresh"
    assert body["user_url"] == f"/v6/user/{user.pk}"


def test_wrong_password_is_a_401_and_counts(api, user):
    response = login(api, password="wrong")
    assert response.status_code == 401
    assert response.json() == {"msg": "Failed to login"}
    user.refresh_from_db()
    assert user.failed_login_attempts == 1
    assert user.last_login_attempt is not None


@pytest.mark.usefixtures("user")
def test_unknown_username_is_a_401_after_a_password_check(api, monkeypatch, settings):
    import accounts.login

    settings.BCRYPT_ROUNDS = 5  # a cost no answer of this process has met before: its first one
    checked = []
    for name in ("checkpw", "hashpw"):
        real = getattr(accounts.login.bcrypt, name)
        monkeypatch.setattr(
            accounts.login.bcrypt, name, lambda *a, name=name, real=real: checked.append(name) or real(*a)
        )
    response = login(api, username="nobody")
    assert response.status_code == 401
    assert response.json() == {"msg": "Failed to login"}
    assert checked == ["checkpw"]  # as costly as a wrong password for a real user, the first time too


def test_success_resets_the_failure_counter(api, user):
    login(api, password="wrong")
    login(api, password="wrong")
    assert login(api).status_code == 200
    user.refresh_from_db()
    assert user.failed_login_attempts == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "alice"}, {"password": "x"}, {"username": "", "password": "x"}, [], "text",
     {"username": "a" * 129, "password": "x"}, {"username": "alice", "password": "x", "mfa_code": "1" * 11}],
)  # fmt: skip
@pytest.mark.usefixtures("user")
def test_login_body_is_validated(api, body):
    response = api.post("/api/token/user", body, format="json")
    assert response.status_code == 400
    assert response.json()["msg"] == "Request body is incorrect"


def test_lock_out_after_max_failures_and_unlock_after_the_period(api, user, mailoutbox):
    for _ in range(settings.PASSWORD_MAX_FAILED_ATTEMPTS):
        assert login(api, password="wrong").status_code == 401
    # blocked: even the right password fails
    blocked = login(api)
    assert blocked.status_code == 401
    assert blocked.json() == {"msg": "Failed to login"}
    assert len(delivered(mailoutbox)) == 1
    assert "blocked" in mailoutbox[0].body and mailoutbox[0].to == [user.email]

    # the period runs from the last failed attempt
    User.objects.filter(pk=user.pk).update(
        last_login_attempt=minutes_ago(settings.PASSWORD_INACTIVATION_MINUTES - 1)
    )
    assert login(api).status_code == 401
    User.objects.filter(pk=user.pk).update(
        last_login_attempt=minutes_ago(settings.PASSWORD_INACTIVATION_MINUTES + 1)
    )
    assert login(api).status_code == 200
    user.refresh_from_db()
    assert user.failed_login_attempts == 0


def test_after_the_period_a_failure_starts_counting_again(api, user):
    User.objects.filter(pk=user.pk).update(
        failed_login_attempts=settings.PASSWORD_MAX_FAILED_ATTEMPTS,
        last_login_attempt=minutes_ago(settings.PASSWORD_INACTIVATION_MINUTES + 1),
    )
    assert login(api, password="wrong").status_code == 401
    user.refresh_from_db()
    assert user.failed_login_attempts == 1
    assert login(api).status_code == 200


def test_blocked_account_mail_is_rate_limited(api, user, mailoutbox, settings):
    settings.PASSWORD_MAX_FAILED_ATTEMPTS = 2
    for _ in range(2):
        login(api, password="wrong")
    for _ in range(3):
        assert login(api).status_code == 401
    assert len(delivered(mailoutbox)) == 1
    User.objects.filter(pk=user.pk).update(
        last_email_failed_login_sent=minutes_ago(settings.PASSWORD_BETWEEN_USER_EMAILS_MINUTES + 1)
    )
    assert login(api).status_code == 401
    assert len(delivered(mailoutbox)) == 2


def test_blocked_unknown_and_wrong_password_answer_alike(api, org, settings, monkeypatch):
    """The answer, its status and its time never tell whether a username exists or is blocked."""
    settings.BCRYPT_ROUNDS = 10  # a real cost, well above the noise of a request
    settings.LOGIN_FAILURES_PER_MINUTE = 0  # many guesses from one address
    wrong, blocked = make_user(org, username="wrong"), make_user(org, username="blocked")
    User.objects.filter(pk=blocked.pk).update(
        failed_login_attempts=settings.PASSWORD_MAX_FAILED_ATTEMPTS, last_login_attempt=minutes_ago(0)
    )
    answers, checks = set(), []
    checkpw = bcrypt.checkpw
    monkeypatch.setattr(
        bcrypt, "checkpw", lambda password, hashed: checks.append(hashed) or checkpw(password, hashed)
    )

    def attempt(username: str) -> None:
        checks.clear()
        response = login(api, username=username, password="wrong")
        answers.add((response.status_code, response.content))
        # One bcrypt check of the cost of a stored hash, whatever the username: the time is alike.
        assert [hashed.split(b"$")[2] for hashed in checks] == [b"10"], username
        User.objects.filter(pk=wrong.pk).update(failed_login_attempts=0)  # never blocked

    # The time the request's own thread works: what other processes on the machine do is left out.
    times = median_seconds(
        {
            "bcrypt": lambda: wrong.check_password("wrong"),
            **{name: lambda name=name: attempt(name) for name in ("wrong", "blocked", "nobody")},
        },
        times=7,
        clock=time.thread_time,
    )
    bcrypt_cost = times.pop("bcrypt")

    assert answers == {(401, b'{"msg":"Failed to login"}')}
    assert min(times.values()) > 0.7 * bcrypt_cost, times
    assert max(times.values()) < 2 * min(times.values()), times


# --- two-factor authentication ------------------------------------------------------------------------
@pytest.mark.usefixtures("two_factor")
def test_first_login_with_two_factor_sets_up_a_secret(api, user):
    response = login(api)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"qr_uri", "otp_secret", "msg"}
    assert "access_token" not in body
    user.refresh_from_db()
    assert user.otp_secret == body["otp_secret"] and len(body["otp_secret"]) == 32
    assert body["qr_uri"] == (
        f"otpauth://totp/vantage6%20%28{settings.SERVER_NAME}%29:alice?secret={user.otp_secret}"
        f"&issuer=vantage6%20%28{settings.SERVER_NAME}%29"
    )


@pytest.mark.usefixtures("user", "two_factor")
def test_two_factor_asks_for_the_code_then_accepts_it(api):
    secret = login(api).json()["otp_secret"]
    early_in_a_time_step()
    ask = login(api)
    assert ask.status_code == 200
    assert ask.json() == {"msg": "Please include your two-factor authentication code"}
    # a code of the previous 30 s step is fine too (clock drift); the official client may send a number
    ok = login(api, mfa_code=int(totp.totp(secret, time.time() - 30)))
    assert ok.status_code == 200
    assert "access_token" in ok.json()
    assert login(api, mfa_code=totp.totp(secret)).status_code == 200


@pytest.mark.usefixtures("two_factor")
def test_asking_for_the_code_is_no_failed_attempt(api, user):
    secret = login(api).json()["otp_secret"]
    for _ in range(settings.PASSWORD_MAX_FAILED_ATTEMPTS + 1):
        assert login(api).json() == {"msg": "Please include your two-factor authentication code"}
    user.refresh_from_db()
    assert user.failed_login_attempts == 0
    assert login(api, mfa_code=totp.totp(secret)).status_code == 200


@pytest.mark.usefixtures("user", "two_factor")
def test_a_two_factor_code_is_accepted_once(api):
    secret = login(api).json()["otp_secret"]
    early_in_a_time_step()
    code = totp.totp(secret)
    assert login(api, mfa_code=code).status_code == 200
    replay = login(api, mfa_code=code)
    assert replay.status_code == 401
    assert replay.json() == {"msg": "Your two-factor authentication code is incorrect!"}
    # nor is the code of an earlier step, even within the window
    assert login(api, mfa_code=totp.totp(secret, time.time() - 30)).status_code == 401
    # the next step's code is new
    assert login(api, mfa_code=totp.totp(secret, time.time() + 30)).status_code == 200


@pytest.mark.usefixtures("two_factor")
def test_wrong_two_factor_code_is_a_401_and_counts(api, user):
    secret = login(api).json()["otp_secret"]
    wrong = str((int(totp.totp(secret)) + 1) % 1_000_000).zfill(6)
    far = totp.totp(secret, time.time() - 120)
    for code in (wrong, far, "abcdef"):
        if totp.matching_step(secret, code) is not None:
            continue
        response = login(api, mfa_code=code)
        assert response.status_code == 401
        assert response.json() == {"msg": "Your two-factor authentication code is incorrect!"}
    user.refresh_from_db()
    assert user.failed_login_attempts >= 2


@pytest.mark.usefixtures("user", "two_factor")
def test_guessing_two_factor_codes_locks_the_account(api):
    secret = login(api).json()["otp_secret"]
    early_in_a_time_step()
    valid = {totp.totp(secret, time.time() + drift) for drift in (-30, 0, 30)}
    guesses = (code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in valid)
    for _ in range(settings.PASSWORD_MAX_FAILED_ATTEMPTS):
        assert login(api, mfa_code=next(guesses)).status_code == 401
    assert login(api, mfa_code=totp.totp(secret)).status_code == 401
    assert login(api).status_code == 401  # blocked: no hint that the password is right


def test_totp_matches_the_rfc_6238_test_vector():
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert totp.totp(secret, 59) == "287082"
    assert totp.totp(secret, 1111111109) == "081804"
    assert totp.matching_step(secret, "081804", 1111111109 + 30) == 1111111109 // 30
    assert totp.matching_step(secret, "081804", 1111111109 + 90) is None


# --- refresh --------------------------------------------------------------------------------------------
def test_refresh_of_a_user(api, user):
    refresh = login(api).json()["refresh_token"]
    response = api.post("/api/token/refresh", HTTP_AUTHORIZATION=f"Bearer {refresh}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "refresh_url", "user_url"}
    assert body["user_url"] == f"/api/user/{user.pk}"
    assert response["jwt-token"] == body["access_token"]
    assert claims(body["access_token"])["sub"] == user.pk


def test_refresh_of_a_node(api, world):
    from accounts.sessions import start_login

    refresh = start_login(world.node_a, "node")[1]
    response = api.post("/api/token/refresh", HTTP_AUTHORIZATION=f"Bearer {refresh}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "refresh_url", "node_url"}
    assert body["node_url"] == f"/api/node/{world.node_a.pk}"
    assert claims(body["access_token"])["client_type"] == "node"


@pytest.mark.usefixtures("user")
def test_refresh_needs_a_refresh_token(api):
    access = login(api).json()["access_token"]
    response = api.post("/api/token/refresh", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response.status_code == 422
    assert response.json() == {"msg": "Only refresh tokens are allowed"}
    assert api.post("/api/token/refresh").status_code == 401


def test_a_refresh_token_is_not_an_access_token(api, user):
    refresh = login(api).json()["refresh_token"]
    response = api.get(f"/api/user/{user.pk}", HTTP_AUTHORIZATION=f"Bearer {refresh}")
    assert response.status_code == 422
    assert response.json() == {"msg": "Only non-refresh tokens are allowed"}


def test_expired_token_is_a_401(api, user):
    token = AccessToken(user.pk, "user")
    token.payload["exp"] = int(time.time()) - 10
    response = api.get(f"/api/user/{user.pk}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json() == {"msg": "Token has expired"}


def test_token_of_a_deleted_user_is_a_401(api, org):
    gone = make_user(org, "Viewer")
    gone_id, headers = gone.pk, bearer(gone)
    gone.delete()
    response = api.post("/api/token/user/validate", **headers)
    assert response.status_code == 401
    assert response.json() == {"msg": f"Error loading the user {gone_id}"}


# --- validate ------------------------------------------------------------------------------------------
def test_validate_a_user_token(api, user):
    response = api.post("/api/token/user/validate", **bearer(user))
    assert response.status_code == 200
    assert response.json() == {
        "msg": "Token is valid", "user_id": user.pk, "username": "alice", "email": user.email,
        "organization_id": user.organization_id,
    }  # fmt: skip


def test_validate_refuses_nodes_and_reset_tokens(api, world, user):
    assert api.post("/api/token/user/validate", **bearer(world.node_a)).status_code == 401
    reset = issue_reset_token(user, PURPOSE_PASSWORD)
    response = api.post("/api/token/user/validate", HTTP_AUTHORIZATION=f"Bearer {reset}")
    assert response.status_code == 422  # a mailed token never opens the API


def test_user_only_endpoints_refuse_a_node(api, world):
    for method, path in [("get", "/api/user"), ("get", "/api/role"), ("patch", "/api/password/change")]:
        response = getattr(api, method)(path, **bearer(world.node_a))
        assert response.status_code == 401, path
