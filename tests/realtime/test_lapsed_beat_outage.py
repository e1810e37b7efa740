"""While the database is away, the room deliveries of a process that went without a beat try its beat
again at most every ``V6_SOCKET_BEAT_RETRY_SECONDS`` (a second), and the outage is logged once: not an
attempt and a warning per packet."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from django.conf import settings
from django.db import OperationalError

from nodes import consumers
from tests.realtime.helpers import Sink, in_memory
from vantage6.socketio.server import Namespace, Server
from vantage6.socketio.store import Liveness

ROOM, NAMESPACE = "collaboration_1", "/tasks"
WARNING = "could not check the sessions of a process without a beat"
RETRY_SECONDS = 1  # README: V6_SOCKET_BEAT_RETRY_SECONDS


class _Database(Liveness):
    """Liveness rows whose database goes away on demand."""

    def __init__(self) -> None:
        self.away = False
        self.beats = 0

    def beat(self, process: str) -> bool:
        self.beats += 1
        if self.away:
            raise OperationalError("connection refused")
        return True

    def silent(self, age: float) -> list[str]:
        return []

    def bury(self, process: str, age: float) -> bool:
        return False


@pytest.mark.django_db  # the handshake's check runs where the database may be used
@pytest.mark.parametrize("retry", [RETRY_SECONDS, 2 * RETRY_SECONDS])
def test_deliveries_of_a_lapsed_process_during_an_outage_retry_the_beat_rarely_and_warn_once(caplog, retry):
    database = _Database()
    # Beats every 0.1 s: it lapses after 0.2 s without one. Its own heartbeat round is not started.
    server = Server(
        namespaces={NAMESPACE: Namespace()},
        liveness=database,
        ping_interval=0.1,
        authenticate=lambda _headers: ({}, True),
        secret=b"secret",
        beat_retry=retry,
    )
    server.ensure_housekeeping = lambda: None  # type: ignore[method-assign]

    async def scenario() -> tuple[Sink, float, int]:
        sink = Sink()
        session, _ = await server.open_session("websocket", {}, sink)
        await server.join(session, NAMESPACE, ROOM)
        await server.beat()  # its last beat before the outage
        database.away = True
        await asyncio.sleep(0.3)  # lapsed
        beats_before, started = database.beats, time.monotonic()
        for number in range(200):
            await server.emit("status", number, room=ROOM, namespace=NAMESPACE)
            await asyncio.sleep(0.01)
        return sink, time.monotonic() - started, database.beats - beats_before

    with caplog.at_level(logging.WARNING):
        sink, elapsed, attempts = in_memory(scenario)

    assert len(sink.packets) == 200  # served as before
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [WARNING]
    assert 1 <= attempts <= elapsed / retry + 1


def test_the_servers_retry_is_its_setting():
    assert consumers.server.beat_retry == settings.SOCKET_BEAT_RETRY_SECONDS == RETRY_SECONDS
