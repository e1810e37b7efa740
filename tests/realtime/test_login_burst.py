"""Bursts of parallel requests against a real server: the lock-out, two-factor codes and reset tokens hold.

The server runs on an SQLite file, or on PostgreSQL when ``V6_DATABASE_URL`` names one.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
import requests

from accounts import totp
from accounts.login import PURPOSE_PASSWORD, issue_reset_token
from accounts.models import User
from collaborations.models import Organization
from tests.factories import PASSWORD
from tests.realtime.live import LIVE, Daphne

pytestmark = pytest.mark.live

MAX_ATTEMPTS = 5  # V6_PASSWORD_MAX_FAILED_ATTEMPTS of the servers below
# A costly hash keeps each guess in flight long enough for the others of a burst to overlap it.
ROUNDS = 10
FAILED, CODE_WRONG = {"msg": "Failed to login"}, {"msg": "Your two-factor authentication code is incorrect!"}


def live_server(live_db, live_folder, **env: str):
    # The bursts test the lock-out of an account; the limit per client address would stop them first.
    limits = {"V6_PASSWORD_MAX_FAILED_ATTEMPTS": str(MAX_ATTEMPTS), "V6_LOGIN_FAILURES_PER_MINUTE": "0"}
    daphne = Daphne(live_db.process_env(**limits, **env), live_folder)
    yield daphne
    daphne.show_log()
    daphne.stop()


@pytest.fixture(scope="module")
def password_server(live_db, live_folder):
    yield from live_server(live_db, live_folder)


@pytest.fixture(scope="module")
def two_factor_server(live_db, live_folder):
    yield from live_server(live_db, live_folder, V6_TWO_FACTOR_AUTH="true")


def live_account(rounds: int, *, two_factor: bool = False) -> User:
    """A user of the live database in an organization of its own, its password hashed at ``rounds``."""
    tag = uuid.uuid4().hex[:8]
    org = Organization.objects.using(LIVE).create(name=f"org-{tag}")
    user = User(username=f"user-{tag}", email=f"{tag}@example.org", organization=org)
    user.password = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()
    user.otp_secret = totp.new_secret() if two_factor else None
    user.save(using=LIVE)
    return user


@pytest.fixture
def account(live_data):  # noqa: ARG001 - needs the live database
    """A user of the live database, with two-factor authentication set up."""
    return live_account(ROUNDS, two_factor=True)


def attempts(user: User) -> int:
    return User.objects.using(LIVE).get(pk=user.pk).failed_login_attempts


def login(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/api/token/user", json=body, timeout=120)


def burst(url: str, bodies: list[dict], path: str = "/api/token/user") -> list[requests.Response]:
    """All ``bodies`` posted at once, each on its own connection."""
    start = threading.Barrier(len(bodies))

    def post(body: dict) -> requests.Response:
        start.wait()
        return requests.post(f"{url}{path}", json=body, timeout=120)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def wrong_code(secret: str) -> str:
    """A code that stays wrong for the next minute at least."""
    valid = {totp.totp(secret, time.time() + drift) for drift in (-30, 0, 30, 60)}
    return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in valid)


def test_a_burst_of_wrong_passwords_stops_at_the_limit(password_server, account):
    responses = burst(password_server.url, [{"username": account.username, "password": "wrong"}] * 16)

    assert [(r.status_code, r.json()) for r in responses] == [(401, FAILED)] * 16
    assert attempts(account) == MAX_ATTEMPTS
    # blocked now: the right password does not open the account
    assert login(password_server.url, {"username": account.username, "password": PASSWORD}).status_code == 401


def test_the_right_password_in_a_burst_does_not_pass_the_lock_out(password_server, account):
    wrong = {"username": account.username, "password": "wrong"}
    with ThreadPoolExecutor(1) as pool:
        wrong_answers = pool.submit(burst, password_server.url, [wrong] * 19)
        # the right password joins the burst once its first guesses are under way
        while attempts(account) < MAX_ATTEMPTS and not wrong_answers.done():
            time.sleep(0.005)
        right = login(password_server.url, {"username": account.username, "password": PASSWORD})
        answers = [*wrong_answers.result(), right]

    assert [(r.status_code, r.json()) for r in answers] == [(401, FAILED)] * 20
    assert attempts(account) == MAX_ATTEMPTS


def test_a_burst_of_wrong_codes_stops_at_the_limit(two_factor_server, account):
    guess = {"username": account.username, "password": PASSWORD, "mfa_code": wrong_code(account.otp_secret)}
    responses = burst(two_factor_server.url, [guess] * 16)

    assert {r.status_code for r in responses} == {401}
    # only the guesses within the limit are evaluated; the others meet the lock-out
    assert [r.json() for r in responses].count(CODE_WRONG) == MAX_ATTEMPTS
    assert attempts(account) == MAX_ATTEMPTS
    right = {**guess, "mfa_code": totp.totp(account.otp_secret)}
    assert login(two_factor_server.url, right).json() == FAILED


def test_a_code_logs_in_once_even_in_a_burst(two_factor_server, account):
    right = {"username": account.username, "password": PASSWORD, "mfa_code": totp.totp(account.otp_secret)}
    responses = burst(two_factor_server.url, [right] * 8)

    assert sorted(r.status_code for r in responses) == [200] + [401] * 7
    assert login(two_factor_server.url, right).status_code == 401


def test_a_reset_token_works_once_even_in_a_burst(password_server, account):
    token = issue_reset_token(account, PURPOSE_PASSWORD)
    passwords = [f"New-password{n}" for n in range(8)]
    bodies = [{"reset_token": token, "password": password} for password in passwords]
    responses = burst(password_server.url, bodies, path="/api/recover/reset")

    assert sorted(r.status_code for r in responses) == [200] + [400] * 7
    chosen = passwords[[r.status_code for r in responses].index(200)]
    assert User.objects.using(LIVE).get(pk=account.pk).check_password(chosen)


def test_a_burst_of_right_passwords_logs_every_one_in(password_server, account):
    # Each check holds its count while it runs: the guesses past the limit wait for a slot.
    responses = burst(password_server.url, [{"username": account.username, "password": PASSWORD}] * 8)

    assert [r.status_code for r in responses] == [200] * 8
    assert attempts(account) == 0
