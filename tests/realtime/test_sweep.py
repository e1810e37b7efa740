"""The sweep every instance runs, and its command: silent nodes go offline, dead processes' connections
end."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from accounts.models import Authenticatable
from nodes.models import NodeConfig, SocketConnection, SocketProcess


def set_status(node, status: str, last_seen) -> None:
    Authenticatable.objects.filter(pk=node.pk).update(status=status, last_seen=last_seen)


def status_of(node) -> str:
    return Authenticatable.objects.get(pk=node.pk).status


@pytest.mark.django_db(transaction=True)
def test_sweep_command(world):
    now = timezone.now()
    set_status(world.node_a, "online", now - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT + 1))
    set_status(world.node_b, "online", now)
    set_status(world.node_c, "online", now)
    # Node C's connection was held by a server process that crashed an hour ago.
    SocketProcess.objects.create(
        id="crashed", beat_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    )
    SocketConnection.objects.create(identity_id=world.node_c.pk, generation="g", process="crashed")
    NodeConfig.objects.create(node=world.node_c, key="encryption", value="false")
    out = io.StringIO()

    try:
        call_command("sweep_sockets", stdout=out)
    finally:
        # Work run from the publisher thread (RabbitMQ layer) used asgiref's executor thread.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()

    assert out.getvalue().strip() == "1 node(s) marked offline"
    assert [status_of(node) for node in (world.node_a, world.node_b, world.node_c)] == [
        "offline",
        "online",
        "offline",
    ]
    assert not SocketProcess.objects.exists()
    assert not SocketConnection.objects.exists()
    assert not NodeConfig.objects.exists()
