"""Process liveness: a heartbeat round costs the same whatever the number of sockets and writes no
session row; a process found silent loses its sessions only if it is still silent when acted on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import SyncToAsync
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
    executor = SyncToAsync.single_thread_executor

    def start() -> CaptureQueriesContext:
        context = CaptureQueriesContext(connections["default"])
        context.__enter__()
        return context

    async def heartbeat_round() -> None:
        await server.beat()
        await server.sweep()

    server.local_websockets = {f"held-{n}": _HeldSocket(f"held-{n}") for n in range(held)}
    try:
        context = executor.submit(start).result()
        asyncio.run(heartbeat_round())
        executor.submit(lambda: context.__exit__(None, None, None)).result()
    finally:
        server.local_websockets = {}
        executor.submit(connections.close_all).result()
    return [query["sql"] for query in context.captured_queries]


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_round_costs_the_same_for_one_or_a_thousand_sockets():
    _statements_of_a_round(0)  # the first beat of the process adds its row
    few, many = _statements_of_a_round(1), _statements_of_a_round(1000)

    assert len(few) == len(many) <= 4
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
