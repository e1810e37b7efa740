"""Requests without a token (logins of users and nodes among them) share one identity's request threads. One
client address flooding them with slow requests (logins with the right password of its own account count no
failures) must not put every other address's login behind its whole queue: the addresses take turns, and one
address holds at most ``V6_REQUEST_THREADS_PER_ADDRESS`` of the share's threads."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
import requests
from django.conf import settings

from tests.realtime.conftest import live_db, live_folder  # noqa: F401 - fixtures
from tests.realtime.live import Daphne
from tests.realtime.slow_server import HOLD_HEADER
from vantage6.handler import Shares

pytestmark = pytest.mark.live

HOLD = 2.5  # seconds each request of the flood holds its thread
FLOOD = (
    settings.REQUEST_THREADS_PER_IDENTITY
)  # the whole anonymous share (the server reads the same environment)


@pytest.fixture
def proxied_slow_server(live_db, live_folder):  # noqa: F811
    """The slow server behind a proxy on the loopback: the client address is the one it names."""
    command = [sys.executable, "-c", "import tests.realtime.slow_server as s; s.main()"]
    server = Daphne(live_db.process_env(V6_TRUSTED_PROXIES="127.0.0.1"), live_folder, command)
    yield server
    server.stop()


def _anonymous(address: str) -> dict[str, str]:
    # X-Request-Id: an answer that is not replayed, so that each request reaches a thread.
    return {"X-Forwarded-For": address, "X-Request-Id": "1"}


def test_one_addresss_flood_without_a_token_leaves_the_share_to_other_addresses(proxied_slow_server):
    url = f"{proxied_slow_server.url}/api/version"
    assert requests.get(url, headers=_anonymous("203.0.113.2"), timeout=30).status_code == 200  # warm
    statuses: list[int] = []

    def flood_once() -> None:
        headers = {**_anonymous("203.0.113.1"), HOLD_HEADER: str(HOLD)}
        statuses.append(requests.get(url, headers=headers, timeout=60).status_code)

    callers = [threading.Thread(target=flood_once) for _ in range(FLOOD)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)  # the flood holds its threads, and the rest of it waits
    asked = time.monotonic()
    assert requests.get(url, headers=_anonymous("203.0.113.2"), timeout=60).status_code == 200
    waited = time.monotonic() - asked
    for caller in callers:
        caller.join(60)

    # Started at once, not when the flood's first requests end (HOLD seconds in).
    assert waited < 1, waited
    assert statuses == [200] * FLOOD  # the flood is answered, not refused


def test_the_clients_of_one_identity_take_turns():
    """The waiting calls without a token: one of each address in turn, each address's in order."""
    shares = Shares(1)
    order: list[str] = []

    async def request(client: str, name: str) -> None:
        await shares.take(None, client)
        order.append(name)
        await asyncio.sleep(0)
        shares.give_back(None, client)

    async def main() -> None:
        await shares.take(None, "203.0.113.1")  # holds the share
        flood = [asyncio.ensure_future(request("203.0.113.1", f"flood{n}")) for n in range(3)]
        await asyncio.sleep(0)
        login = asyncio.ensure_future(request("203.0.113.2", "login"))
        await asyncio.sleep(0)
        shares.give_back(None, "203.0.113.1")
        await asyncio.gather(*flood, login)

    asyncio.run(main())
    assert order == ["flood0", "login", "flood1", "flood2"]
    assert shares._held == {} and shares._waiting == {} and shares._held_by_client == {}


def test_one_client_holds_at_most_its_share_of_its_identitys():
    """A client at ``per_client`` waits; another client of the same identity is let in at once, before it."""
    shares = Shares(4, per_client=2)

    async def main() -> None:
        for _ in range(2):
            await shares.take(None, "203.0.113.1")
        third = asyncio.ensure_future(shares.take(None, "203.0.113.1"))
        await asyncio.sleep(0)
        assert not third.done()  # over its client's share, within the identity's
        await asyncio.wait_for(shares.take(None, "203.0.113.2"), 1)  # another address: at once
        shares.give_back(None, "203.0.113.1")
        await asyncio.wait_for(third, 1)  # its client's thread came free
        for client in ("203.0.113.1", "203.0.113.1", "203.0.113.2"):
            shares.give_back(None, client)

    asyncio.run(main())
    assert shares._held == {} and shares._waiting == {} and shares._held_by_client == {}
