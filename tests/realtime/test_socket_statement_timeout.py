"""A socket whose handshake or connect meets a statement canceled past ``V6_STATEMENT_TIMEOUT_SECONDS``
is told so, as REST tells a request (not that the database is unavailable); the process goes into no
outage mode (its end would tell every node ``sync``), and a refused connect leaves no connection row."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
import requests

from nodes.models import SocketConnection
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, make_world, token
from tests.realtime.live import LIVE, LONG_PINGS, Daphne

pytestmark = [pytest.mark.live, requires_services("postgres")]

CANCELED = "The request took longer than the database allows (1 s) and was canceled; nothing was changed."


@pytest.fixture(scope="module")
def bounded(live_db, live_folder):
    """A server whose statements are canceled after one second (the live tests' short timers: a client
    that gave up a connect is found gone within seconds)."""
    daphne = Daphne(live_db.process_env(V6_STATEMENT_TIMEOUT_SECONDS="1"), live_folder)
    yield daphne
    daphne.stop()


@pytest.fixture(scope="module")
def bounded_slow_beat(live_db, live_folder):
    """``bounded`` with its beats far apart: on a loaded machine the waits behind a held table could add
    up past a short beat lapse, and a process that went without a beat checks its sessions again, telling
    its nodes ``sync`` too (not what is asked here)."""
    daphne = Daphne(live_db.process_env(V6_STATEMENT_TIMEOUT_SECONDS="1", **LONG_PINGS), live_folder)
    yield daphne
    daphne.stop()


@contextmanager
def held(dsn: str, sql: str, *args: object) -> Iterator[None]:
    """Another connection runs ``sql`` (a lock) in a transaction it keeps open meanwhile."""
    holder = psycopg2.connect(dsn)
    try:
        with holder.cursor() as cursor:
            cursor.execute(sql, args)
        yield
    finally:
        holder.rollback()
        holder.close()


def test_a_canceled_handshake_is_told_so_and_is_no_outage(bounded_slow_beat, live_data, sockets):
    world = make_world()
    witness = sockets(bounded_slow_beat.url, token(world.node_a))
    witness.wait_ready(world.node_a)
    bearer = token(world.node_b)
    # The handshake reads the token's identity: the table is held, the read waits past the bound.
    with held(live_data.url, "LOCK TABLE authenticatable IN ACCESS EXCLUSIVE MODE"):
        handshake = requests.get(
            f"{bounded_slow_beat.url}/socket.io/",
            params={"EIO": "4", "transport": "polling"},
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=30,
        )
    # Housekeeping rounds (every 0.15 s) reach the database again: the end of an outage would be heard.
    heard = witness.received(3)

    assert handshake.status_code == 503, handshake.text
    assert handshake.json() == {"code": 3, "message": CANCELED}
    assert ("sync", None) not in heard, heard


def test_a_canceled_connect_is_told_so_leaves_no_row_and_is_no_outage(bounded, live_data, sockets):
    world = make_world()
    node = world.node_b
    witness = sockets(bounded.url, token(world.node_a))
    witness.wait_ready(world.node_a)
    bearer = token(node)
    # The connect writes the node's connection row, then marks the node online: that write waits for
    # the node's row, which another transaction holds (not its key: the connection row's insert passes).
    with held(live_data.url, "SELECT id FROM authenticatable WHERE id = %s FOR NO KEY UPDATE", node.pk):
        refused = sockets(bounded.url, bearer)
        refusal = refused.wait_for("connect_error", timeout=15)
        refused.close()
    heard = witness.received(3)

    assert refusal == {"message": CANCELED}
    assert ("sync", None) not in heard, heard
    # Nothing of the refused connect stays: the node is no more connected than before.
    assert eventually(lambda: not SocketConnection.objects.using(LIVE).filter(identity_id=node.pk).exists())
