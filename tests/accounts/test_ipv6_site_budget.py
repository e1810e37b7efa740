"""An attacker holding an IPv6 /48 has 65,536 /64s, each a client address with a budget of its own:
failed logins and recovery requests also draw on a budget of the /48, ``BLOCK_BUDGETS`` times a
client's, so spreading guesses over the /64s buys sixteen budgets, not 65,536."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.login import RECOVERY_REQUESTS
from accounts.models import ClientLimit
from tests.conftest import requires_services
from tests.factories import PASSWORD, make_org, make_user
from vantage6.throttle import BLOCK_BUDGETS, TABLE, FailureLimiter

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


def test_a_clients_budgets_are_read_in_one_statement(api, settings):
    settings.LOGIN_FAILURES_PER_MINUTE = LIMIT
    make_user(make_org("A"), username="victim")
    with CaptureQueriesContext(connection) as queries:
        assert _login(api, PASSWORD, _in_site(1)).status_code == 200
    budgets = [query["sql"] for query in queries if TABLE in query["sql"]]
    assert len(budgets) == 1, budgets  # its own and its /48's


def _ask(api, address: str):
    return api.post("/api/recover/lost", {"email": "x@example.org"}, format="json", REMOTE_ADDR=address)


def test_a_client_refused_for_its_48_keeps_its_own_budget(api, settings, monkeypatch):
    settings.RECOVERY_REQUESTS_PER_HOUR = LIMIT
    now = [0.0]
    monkeypatch.setattr(RECOVERY_REQUESTS, "clock", lambda: now[0])
    for n in range(BLOCK_BUDGETS):  # the site's other clients use up its /48's budget
        assert _ask(api, _in_site(n)).status_code == 200
    now[0] = 600
    assert _ask(api, _in_site(BLOCK_BUDGETS)).status_code == 429

    now[0] = RECOVERY_REQUESTS.window + 1  # the /48's window closed; the refusal opened none of its own

    assert _ask(api, _in_site(BLOCK_BUDGETS)).status_code == 200


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_parallel_burst_passes_no_budget():
    """Each thread on its own connection, as servers are: clients of one /48 asking at once, several
    times each, are let through no more often than either budget allows."""
    # More clients than the /48 lets through (its budget binds), each trying past its own.
    limiter, limit, clients, tries = FailureLimiter("burst", window=3600), 1, BLOCK_BUDGETS + 4, 2
    start = threading.Barrier(clients)
    passed: list[str] = []

    def client(n: int) -> None:
        start.wait()
        try:
            for _ in range(tries):
                if limiter.attempt(_in_site(n), limit) == 0:
                    passed.append(_in_site(n))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(passed) == limit * BLOCK_BUDGETS  # of clients * tries (40) attempts
    assert all(passed.count(address) <= limit for address in set(passed))
    hits = dict(ClientLimit.objects.values_list("name", "hits"))
    assert hits.pop("burst 2001:db8:7::/48") == limit * BLOCK_BUDGETS
    # What each client's own budget holds is what it was let through: refusals took nothing.
    own = {f"burst {_in_site(n)}": passed.count(_in_site(n)) for n in range(clients)}
    assert hits.keys() <= own.keys()
    assert {name: hits.get(name, 0) for name in own} == own


_OTHERS = [_in_site(n) for n in range(2, BLOCK_BUDGETS + 2) for _ in range(2)]  # spend the /48's budget


@pytest.mark.parametrize(
    ("before", "address", "refused", "statements"),
    [
        ([_in_site(1)], _in_site(1), False, 1),  # counted in the windows open
        ([_in_site(1)] * 2, _in_site(1), True, 1),  # refused by its own budget
        ([_in_site(1), *_OTHERS[1:]], _in_site(1), True, 1),  # refused by its /48's
        (_OTHERS, _in_site(1), True, 1),  # refused by its /48's, its own budget not yet drawn on
        (["203.0.113.9"], "203.0.113.9", False, 1),  # an IPv4 client: its own budget alone
        ([], _in_site(1), False, 2),  # counted in windows it opens, which forgets those closed
    ],
)
def test_an_attempt_counted_or_refused_is_one_statement(before, address, refused, statements):
    limiter, now = FailureLimiter("test", window=60), [0.0]
    limiter.clock = lambda: now[0]
    for client in before:
        assert limiter.attempt(client, 2) == 0
    now[0] = 1
    held = dict(ClientLimit.objects.values_list("name", "hits"))

    with CaptureQueriesContext(connection) as queries:
        waits = limiter.attempt(address, 2)

    assert len(queries) == statements, [query["sql"] for query in queries]
    budgets = [f"test {address}"] + ([] if "." in address else ["test 2001:db8:7::/48"])
    counted = {name: held.get(name, 0) + 1 for name in budgets}
    expected = (59, held) if refused else (0, {**held, **counted})
    assert (waits, dict(ClientLimit.objects.values_list("name", "hits"))) == expected
