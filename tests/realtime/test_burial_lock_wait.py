"""A burial that waits for a row held by another process (a stopped or dying one, mid-transaction) holds
no client of the burying process up: its connects are admitted, and its nodes join their rooms, while the
burial waits; the burial is done once the row is free."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import websocket

from accounts.models import Authenticatable
from nodes.models import Node, SocketConnection, SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, hears, row_held, token
from tests.realtime.live import LIVE, sql_apart

pytestmark = [pytest.mark.live, requires_services("postgres")]


def _lock_waits(dsn: str) -> int:
    """Statements on the live database waiting for a lock."""
    ((count,),) = sql_apart(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        dsn=dsn,
    )
    return count


def _joins_within(port: int, bearer: str, room: str, seconds: float) -> bool:
    """Whether a node's websocket gets its Engine.IO handshake, the ``/tasks`` acknowledgement and the
    message that it joined ``room`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    try:
        ws = websocket.create_connection(url, timeout=seconds, header=[f"Authorization: Bearer {bearer}"])
    except websocket.WebSocketException:
        return False
    try:
        if not hears(ws, lambda frame: frame.startswith("0{"), deadline - time.monotonic()):
            return False
        ws.send("40/tasks,{}")
        steps = (lambda frame: frame.startswith("40/tasks,"), lambda frame: f"joined room {room}" in frame)
        return all(hears(ws, step, deadline - time.monotonic()) for step in steps)
    except websocket.WebSocketConnectionClosedException:  # dropped, without a ping answered in time
        return False
    finally:
        ws.close()


def _last_room(node: Node) -> str:
    return f"collaboration_{node.collaboration_id}_organization_{node.organization_id}"


@contextmanager
def _burial_waiting(dsn: str, held: list[Node], locked: Node) -> Iterator[str]:
    """A silent process holding the connections of ``held`` (online), in that order, while another
    process holds the row of ``locked`` in a transaction it does not get to end (stopped, or dying); once
    the server's sweep (every ping interval, 2 s) waits for that row. The silent process's id."""
    dead = f"dead-{uuid.uuid4().hex[:8]}"
    SocketProcess.objects.using(LIVE).create(
        id=dead, beat_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    )
    for node in held:
        SocketConnection.objects.using(LIVE).create(identity_id=node.pk, generation="g", process=dead)
    Authenticatable.objects.using(LIVE).filter(pk__in=[node.pk for node in held]).update(status="online")
    with row_held(locked.pk, dsn=dsn):
        assert eventually(lambda: _lock_waits(dsn) > 0, timeout=10)
        yield dead


def _buried(dead: str) -> bool:
    rows = SocketProcess.objects.using(LIVE).filter(id=dead)
    return eventually(lambda: not rows.exists(), timeout=10)


def test_a_connect_is_admitted_while_the_sweep_waits_for_a_locked_row(server, live_data, live_world):
    node_a, node_b = live_world.node_a, live_world.node_b
    bearer = token(node_b)
    with _burial_waiting(live_data.url, [node_a], locked=node_a) as dead:
        joined = _joins_within(server.port, bearer, _last_room(node_b), seconds=3)

    assert joined, "the node's connect waited for the sweep"
    # The burial, tried again, ends the dead process's connections once the row is free.
    assert _buried(dead)
    assert Authenticatable.objects.using(LIVE).get(pk=node_a.pk).status == "offline"
    assert not SocketConnection.objects.using(LIVE).filter(process=dead).exists()


def test_a_burial_waiting_for_a_row_lets_go_of_the_rows_it_locked(server, live_data, live_world):
    """Node A's row, locked by the burial before it waits for node C's, is free again within the bound
    of that wait: A reconnects here meanwhile, and the burial, tried again, ends C's connection."""
    node_a, node_c = live_world.node_a, live_world.node_c
    bearer = token(node_a)  # its login writes A's row too
    with _burial_waiting(live_data.url, [node_a, node_c], locked=node_c) as dead:
        joined = _joins_within(server.port, bearer, _last_room(node_a), seconds=4)

    assert joined, "the node's connect waited for the burial's lock of its row"
    assert _buried(dead)
    assert Authenticatable.objects.using(LIVE).get(pk=node_c.pk).status == "offline"
