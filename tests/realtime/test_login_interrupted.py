"""A server process killed while it checks passwords: the guesses it counted stop counting, and the
lock-out still holds for the guesses that follow.

The server runs on an SQLite file, or on PostgreSQL when ``V6_DATABASE_URL`` names one.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
import requests

from accounts.models import AuditAction, AuditEntry, User
from tests.factories import PASSWORD
from tests.realtime.live import LIVE, Daphne
from tests.realtime.test_login_burst import (
    FAILED,
    MAX_ATTEMPTS,
    ROUNDS,
    attempts,
    burst,
    live_account,
    live_server,
    login,
)

pytestmark = pytest.mark.live

# A check of this cost is still running when the process is killed.
SLOW_ROUNDS = 13
WRONG = "wrong"


@pytest.fixture
def server(live_db, live_folder):
    yield from live_server(live_db, live_folder)


@pytest.fixture
def account(live_data):  # noqa: ARG001 - needs the live database
    return live_account(SLOW_ROUNDS)


def kill_mid_burst(server: Daphne, user: User, guesses: int) -> None:
    """Post ``guesses`` wrong passwords at once and kill the server (SIGKILL) while they are checked."""
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(burst, server.url, [{"username": user.username, "password": WRONG}] * guesses)
        deadline = time.monotonic() + 30
        while User.objects.using(LIVE).get(pk=user.pk).last_login_attempt is None:
            assert time.monotonic() < deadline, "no guess was counted"
            time.sleep(0.01)
        time.sleep(0.3)  # the burst's guesses are counted by now, each check lasts longer
        assert not answers.done()
        server.process.kill()
        server.process.wait()
        with pytest.raises(requests.ConnectionError):
            answers.result()
    server.start()


def lock_outs(user: User) -> int:
    return AuditEntry.objects.using(LIVE).filter(action=AuditAction.USER_LOCK_OUT, object_id=user.pk).count()


def test_guesses_of_a_killed_process_do_not_block_the_account(server, account):
    kill_mid_burst(server, account, 2 * MAX_ATTEMPTS)

    answer = login(server.url, {"username": account.username, "password": PASSWORD})

    assert answer.status_code == 200, answer.text
    assert set(answer.json()) >= {"access_token", "refresh_token"}
    assert attempts(account) == 0
    assert lock_outs(account) == 0


def test_after_a_killed_process_wrong_guesses_still_stop_at_the_limit(server, account):
    kill_mid_burst(server, account, 2 * MAX_ATTEMPTS)
    # The checks that follow need the cost of the burst tests only (the slow one served the kill).
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(ROUNDS)).decode()
    User.objects.using(LIVE).filter(pk=account.pk).update(password=hashed)

    answers = burst(server.url, [{"username": account.username, "password": WRONG}] * 12)
    right = login(server.url, {"username": account.username, "password": PASSWORD})

    assert [(r.status_code, r.json()) for r in [*answers, right]] == [(401, FAILED)] * 13
    assert attempts(account) == MAX_ATTEMPTS
    assert lock_outs(account) == 1
