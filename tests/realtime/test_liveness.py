"""Process liveness: a heartbeat round costs the same whatever the number of sockets and writes no
session row; a process found silent loses its sessions only if it is still silent when acted on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test.utils import CaptureQueriesContext

from nodes.consumers import server
from nodes.models import SocketProcess, SocketSession
from nodes.socket_store import DatabaseSessionStore
from vantage6.socketio.store import WEBSOCKET, Session


class _HeldSocket:
    """A websocket of this process, as the heartbeat round sees it."""

    def __init__(self, sid: str) -> None:
        self.session = Session(sid, WEBSOCKET, process=server.process)

    async def close(self) -> None:
        raise AssertionError("a live process drops none of its sockets")


def _statements_of_a_round(held: int) -> list[str]:
    async def heartbeat_round() -> None:
        await server.beat()
        await server.sweep()

    async_to_sync(server.beat)()  # the process's row, in this test's database
    server.local_websockets = {f"held-{n}": _HeldSocket(f"held-{n}") for n in range(held)}
    try:
        # From synchronous code the database work runs in this thread, on the test's connection.
        with CaptureQueriesContext(connections["default"]) as context:
            async_to_sync(heartbeat_round)()
    finally:
        server.local_websockets = {}
    return [query["sql"] for query in context.captured_queries]


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside a transaction
def test_a_heartbeat_round_costs_the_same_for_one_or_a_thousand_sockets():
    few, many = _statements_of_a_round(1), _statements_of_a_round(1000)

    assert len(few) == len(many) <= 5
    assert not [sql for sql in many if "socket_session" in sql and sql.startswith("UPDATE")]


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds)


@pytest.mark.django_db
def test_a_stalled_process_that_beats_again_keeps_its_sessions():
    store = DatabaseSessionStore()
    SocketProcess.objects.create(id="stalled", beat_at=_ago(600))
    store.create(Session("s1", WEBSOCKET, process="stalled"))
    before = time.time() - 60

    assert store.silent_processes(before) == ["stalled"]
    store.beat("stalled")  # it wakes up before the survivor acts

    assert store.bury("stalled", before) == []
    assert SocketSession.objects.filter(sid="s1").exists()
    assert SocketProcess.objects.filter(id="stalled").exists()


@pytest.mark.django_db
def test_a_dead_process_is_buried_once_with_its_sessions():
    store = DatabaseSessionStore()
    SocketProcess.objects.create(id="dead", beat_at=_ago(600))
    store.create(Session("s1", WEBSOCKET, process="dead"))
    store.create(Session("s2", WEBSOCKET, process="alive"))
    before = time.time() - 60

    assert store.bury("dead", before) == ["s1"]
    assert store.bury("dead", before) == []  # another survivor was first
    assert store.idle(time.time() + 1) == []  # a held websocket is never idle by its own activity


@pytest.mark.django_db(transaction=True)
def test_a_websocket_row_this_process_no_longer_holds_is_ended_at_its_next_round():
    store = DatabaseSessionStore()
    store.create(Session("lost", WEBSOCKET, process=server.process))
    store.create(Session("held-0", WEBSOCKET, process=server.process))
    SocketSession.objects.update(last_activity=_ago(600))

    _statements_of_a_round(1)  # holds "held-0" only

    assert list(SocketSession.objects.values_list("sid", flat=True)) == ["held-0"]
