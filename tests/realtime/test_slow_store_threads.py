"""A collaboration administrator links an algorithm store that never answers, and sends many calls to it
at once: each call waits up to the store timeout in a request thread, and the process has a bounded
number of them. The store calls take a few; the other clients are still answered meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.collaborations.helpers import FakeStore
from tests.realtime.helpers import make_user, token
from tests.realtime.live import Daphne

pytestmark = pytest.mark.live

STORE_TIMEOUT = 6
# The store calls of a process at once, and of one caller (as the README states them).
MAX_CALLS, MAX_CALLS_PER_CALLER = 8, 2
CALLS = 40  # more than a process has request threads (vantage6.handler.MAX_THREADS)


@pytest.fixture
def silent_store():
    """A store that accepts connections and never answers; its URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=CALLS * 2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    stop.set()
    acceptor.join(5)
    for sock in held:
        sock.close()
    listener.close()


@pytest.fixture
def store_server(live_db, live_folder):
    """A server whose store calls may go to this machine, and end after ``STORE_TIMEOUT``."""
    env = live_db.process_env(
        V6_ALGORITHM_STORE_ALLOW_PRIVATE="true", V6_ALGORITHM_STORE_TIMEOUT_SECONDS=str(STORE_TIMEOUT)
    )
    server = Daphne(env, live_folder)
    yield server
    server.stop()


def _link(server: Daphne, store_url: str, headers: dict) -> int:
    """The status of linking the store at ``store_url`` (which registers this server there)."""
    body = {
        "name": "s",
        "algorithm_store_url": store_url,
        "server_url": "https://v6.example.org/api",
        "force": True,
    }
    return requests.post(
        f"{server.url}/api/algorithmstore", json=body, headers=headers, timeout=60
    ).status_code


@contextmanager
def _calls_waiting(server: Daphne, store_url: str, callers: list[dict]) -> Iterator[list[int]]:
    """One call to link ``store_url`` per headers of ``callers``, all at once, each in a thread of its own;
    the body runs once they have reached the store, and their answers are in the list once it ends."""
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda headers=headers: answers.append(_link(server, store_url, headers)))
        for headers in callers
    ]
    for thread in threads:
        thread.start()
    time.sleep(1)  # the calls have reached the store (and taken their threads)
    try:
        yield answers
    finally:
        for thread in threads:
            thread.join(60)


def test_calls_to_a_silent_store_leave_threads_for_other_clients(store_server, live_world, silent_store):
    server = store_server
    admin = {"Authorization": f"Bearer {token(make_user(live_world.org_a, roles=('Root',)))}"}
    other = {"Authorization": f"Bearer {token(make_user(live_world.org_b, roles=('Researcher',)))}"}
    assert requests.get(f"{server.url}/api/user", headers=other, timeout=30).status_code == 200
    waits = []
    with _calls_waiting(server, silent_store, [admin] * CALLS) as answers:
        for _ in range(5):
            started = time.monotonic()
            assert requests.get(f"{server.url}/api/user", headers=other, timeout=30).status_code == 200
            waits.append(time.monotonic() - started)
    assert max(waits) < STORE_TIMEOUT / 3, waits  # the first one came while the calls waited
    assert len(answers) == CALLS
    # Too many at once, of one caller: answered at once; the others: not reached.
    assert sorted(set(answers)) == [404, 429], answers
    assert answers.count(429) == CALLS - MAX_CALLS_PER_CALLER, answers


def test_one_callers_calls_to_a_silent_store_leave_store_calls_for_the_others(
    store_server, live_world, silent_store
):
    """One administrator's calls to a store that never answers take a few of the process's store calls:
    another client's call to a store that answers is made, not refused as one too many."""
    attacker = {"Authorization": f"Bearer {token(make_user(live_world.org_a, roles=('Root',)))}"}
    other = {"Authorization": f"Bearer {token(make_user(live_world.org_b, roles=('Root',)))}"}
    with _calls_waiting(store_server, silent_store, [attacker] * MAX_CALLS) as held, FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        answered = _link(store_server, store.url, other)
    assert answered == 201
    assert sorted(held) == [404] * MAX_CALLS_PER_CALLER + [429] * (MAX_CALLS - MAX_CALLS_PER_CALLER)


def test_the_store_calls_of_many_callers_at_once_are_bounded(store_server, live_world, silent_store):
    """Callers who each stay within their own bound take all the process's store calls: one more call,
    of yet another caller, is a 503 at once, not another thread waiting for the silent store."""
    callers = [make_user(live_world.org_a, roles=("Root",)) for _ in range(MAX_CALLS // MAX_CALLS_PER_CALLER)]
    headers = [
        {"Authorization": f"Bearer {token(user)}"} for user in callers for _ in range(MAX_CALLS_PER_CALLER)
    ]
    late = {"Authorization": f"Bearer {token(make_user(live_world.org_b, roles=('Root',)))}"}
    with _calls_waiting(store_server, silent_store, headers) as held:
        started = time.monotonic()
        refused = [_link(store_server, silent_store, late) for _ in range(MAX_CALLS_PER_CALLER)]
        waited = time.monotonic() - started
    assert (refused, held) == ([503] * MAX_CALLS_PER_CALLER, [404] * MAX_CALLS)
    assert waited < STORE_TIMEOUT / 3, waited
    # The refused calls took none of the late caller's own: once the others ended, it calls a store.
    with FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        assert _link(store_server, store.url, late) == 201
