"""A client that reaches several server instances (a load balancer in front) gets one budget of failed
logins and recovery requests, not one per instance."""

from __future__ import annotations

import itertools
import uuid

import pytest
import requests

from accounts.models import AuditEntry, ClientLimit, User
from tests.conftest import requires_services
from tests.factories import PASSWORD
from tests.realtime.helpers import make_user
from tests.realtime.live import LIVE, Daphne

pytestmark = [pytest.mark.live, requires_services("postgres")]

LIMIT = 3
# The servers believe the X-Forwarded-For of this test, so that its client address is its own.
LIMITS = {
    "V6_LOGIN_FAILURES_PER_MINUTE": str(LIMIT),
    "V6_RECOVERY_REQUESTS_PER_HOUR": str(LIMIT),
    "V6_PASSWORD_MAX_FAILED_ATTEMPTS": "100",
    "V6_TRUSTED_PROXIES": "127.0.0.1/32",
}


@pytest.fixture(scope="module")
def two_instances(live_db, live_folder):
    servers = [Daphne(live_db.process_env(**LIMITS), live_folder) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def client(live_data):  # noqa: ARG001 - needs the live database reachable
    """A client address of the test's own; its counts go with the test."""
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    yield {"X-Forwarded-For": address}
    ClientLimit.objects.using(LIVE).filter(name__contains=f" {address}").delete()


def _post(path: str, body: dict):
    return lambda url, headers: requests.post(f"{url}/api/{path}", json=body, headers=headers, timeout=30)


def _user_login(username: str, password: str):
    return _post("token/user", {"username": username, "password": password})


def _node_login(api_key: str):
    return _post("token/node", {"api_key": api_key})


def _recovery(username: str):
    return _post("recover/lost", {"username": username})


def test_failed_logins_on_any_instance_share_one_budget(two_instances, live_world, client):
    victim = make_user(live_world.org_a)
    instances = itertools.cycle(server.url for server in two_instances)
    wrong, right = _user_login(victim.username, "wrong"), _user_login(victim.username, PASSWORD)
    node_guess = _node_login(str(uuid.uuid4()))
    for guess in (wrong, node_guess, wrong):
        assert guess(next(instances), client).status_code == 401
    before = (
        User.objects.using(LIVE).filter(pk=victim.pk).values_list("failed_login_attempts").get(),
        AuditEntry.objects.using(LIVE).count(),
    )

    # Each instance has seen fewer than LIMIT failures; together they have seen LIMIT.
    for server in two_instances:
        for attempt in (wrong, right, node_guess):
            refused = attempt(server.url, client)
            assert refused.status_code == 429, server.url
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert refused.json()["msg"].startswith("Too many failed logins from your address")
    # Nothing was checked: no guess counted against the account; one entry says the address was refused.
    after = User.objects.using(LIVE).filter(pk=victim.pk).values_list("failed_login_attempts").get()
    assert after == before[0] == (2,)
    assert AuditEntry.objects.using(LIVE).count() == before[1] + 1


def test_recovery_requests_on_any_instance_share_one_budget(two_instances, live_world, client):
    victim = make_user(live_world.org_a)
    instances = itertools.cycle(server.url for server in two_instances)
    asked = [_recovery(victim.username)(next(instances), client).status_code for _ in range(LIMIT + 2)]
    assert asked == [200] * LIMIT + [429] * 2
    row = User.objects.using(LIVE).filter(pk=victim.pk).values_list("last_email_recover_password_sent").get()
    assert row == (None,)  # no mail server: nothing mailed either way
