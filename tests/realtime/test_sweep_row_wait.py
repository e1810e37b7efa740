"""Both sweeps, the heartbeat sweep of silent nodes and the burial of a silent process, give up on a row
another transaction holds longer than ``ROW_WAIT_MS``: nothing changes, a warning says so, and the next
round, once the row is free, does the work."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from accounts.models import Authenticatable
from nodes.consumers import mark_silent_nodes_offline
from nodes.models import SocketConnection, SocketProcess
from nodes.socket_store import DatabaseLiveness
from tests.conftest import requires_services
from tests.realtime.helpers import row_held

pytestmark = [pytest.mark.django_db(transaction=True), requires_services("postgres")]


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds)


def _row_held(pk: int) -> AbstractContextManager[None]:
    return row_held(pk, **connection.get_connection_params())


def _status(node) -> str:
    return Authenticatable.objects.get(pk=node.pk).status


def test_the_heartbeat_sweep_leaves_a_held_row_to_its_next_round(world, caplog):
    node = world.node_a
    Authenticatable.objects.filter(pk=node.pk).update(status="online", last_seen=_ago(600))

    with _row_held(node.pk), caplog.at_level(logging.WARNING, logger="nodes"):
        assert mark_silent_nodes_offline() == []
        assert _status(node) == "online"

    assert "silent nodes wait for a row held elsewhere; marked offline next round" in caplog.messages
    assert [swept["id"] for swept in mark_silent_nodes_offline()] == [node.pk]
    assert _status(node) == "offline"


def test_the_burial_leaves_a_held_row_to_its_next_round(world, caplog):
    node = world.node_a
    lost: list[dict] = []
    liveness = DatabaseLiveness(process_lost=lost.extend)
    SocketProcess.objects.create(id="dead", beat_at=_ago(600))
    SocketConnection.objects.create(identity_id=node.pk, generation="g", process="dead")
    Authenticatable.objects.filter(pk=node.pk).update(status="online")

    with _row_held(node.pk), caplog.at_level(logging.WARNING, logger="nodes"):
        assert liveness.bury("dead", 60) is False
        assert SocketProcess.objects.filter(id="dead").exists()
        assert _status(node) == "online"

    assert "burial of server process dead waits for a row held elsewhere; tried again" in caplog.messages
    assert liveness.bury("dead", 60) is True
    assert _status(node) == "offline"
    assert [gone["id"] for gone in lost] == [node.pk]
    assert not SocketConnection.objects.filter(process="dead").exists()
