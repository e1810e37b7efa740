"""The sweep every instance runs, and its command: silent nodes go offline, abandoned sessions end."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from accounts.models import Authenticatable
from nodes.consumers import node_rooms
from nodes.models import NodeConfig, SocketRoom, SocketSession


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
    # A session of node C that the instance holding it never ended (it crashed an hour ago).
    long_ago = now - timedelta(hours=1)
    rooms = node_rooms(world.org_c.pk, world.collab_c.pk)
    identity = {
        "kind": "node",
        "id": world.node_c.pk,
        "name": "node-c",
        "org_id": world.org_c.pk,
        "rooms": rooms,
    }
    session = SocketSession.objects.create(
        sid="abandoned",
        transport="websocket",
        namespaces={"/tasks": {"sid": "socket", "state": identity}},
        owner=f"node:{world.node_c.pk}",
        created_at=long_ago,
        last_activity=long_ago,
        ping_sent_at=long_ago,
    )
    SocketRoom.objects.bulk_create(
        SocketRoom(session=session, namespace="/tasks", room=room) for room in rooms
    )
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
    assert not SocketSession.objects.exists()
    assert not SocketRoom.objects.exists()
    assert not NodeConfig.objects.exists()
