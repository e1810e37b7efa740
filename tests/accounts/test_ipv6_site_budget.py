"""An attacker holding an IPv6 /48 has 65,536 /64s, each a client address with a budget of its own:
failed logins and recovery requests also draw on a budget of the /48, ``BLOCK_BUDGETS`` times a
client's, so spreading guesses over the /64s buys sixteen budgets, not 65,536."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD, make_org, make_user
from vantage6.throttle import BLOCK_BUDGETS

pytestmark = pytest.mark.django_db

LIMIT = 1


def _in_site(n: int, site: str = "2001:db8:7") -> str:
    """An address in the n-th /64 of the /48 ``site``."""
    return f"{site}:{n:x}::1"


def _login(api, password: str, address: str):
    # Wrong guesses name nobody: the victim's own lock-out is not what is tried here.
    body = {"username": "victim" if password == PASSWORD else "nobody", "password": password}
    return api.post("/api/token/user", body, format="json", REMOTE_ADDR=address)


def test_guesses_spread_over_the_64s_of_a_48_are_held_back_together(api, settings):
    settings.LOGIN_FAILURES_PER_MINUTE = LIMIT
    make_user(make_org("A"), username="victim")
    for n in range(BLOCK_BUDGETS):
        for _ in range(LIMIT):
            assert _login(api, "wrong", _in_site(n)).status_code == 401

    fresh_64 = _login(api, PASSWORD, _in_site(BLOCK_BUDGETS))

    assert fresh_64.status_code == 429
    assert _login(api, PASSWORD, _in_site(0, site="2001:db8:8")).status_code == 200  # another site
    assert _login(api, PASSWORD, "203.0.113.9").status_code == 200


def test_a_sites_clients_failing_now_and_then_are_not_held_back(api, settings):
    settings.LOGIN_FAILURES_PER_MINUTE = LIMIT
    make_user(make_org("A"), username="victim")
    for n in range(BLOCK_BUDGETS - 1):
        assert _login(api, "wrong", _in_site(n)).status_code == 401

    assert _login(api, PASSWORD, _in_site(BLOCK_BUDGETS)).status_code == 200


def test_recovery_requests_spread_over_the_64s_of_a_48_are_held_back_together(api, settings):
    settings.RECOVERY_REQUESTS_PER_HOUR = LIMIT
    for n in range(BLOCK_BUDGETS):
        for _ in range(LIMIT):
            asked = api.post(
                "/api/recover/lost", {"email": "x@example.org"}, format="json", REMOTE_ADDR=_in_site(n)
            )
            assert asked.status_code == 200

    refused = api.post(
        "/api/recover/lost", {"email": "x@example.org"}, format="json", REMOTE_ADDR=_in_site(BLOCK_BUDGETS)
    )

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
