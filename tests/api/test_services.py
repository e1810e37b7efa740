"""The external services, when configured: PostgreSQL as the database, RabbitMQ between processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid

import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.conf import settings
from django.db import connection

from tests.conftest import requires_services


@requires_services("postgres")
@pytest.mark.django_db
def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL ")
    assert connection.settings_dict["NAME"].startswith("test_")


@requires_services("postgres")
@pytest.mark.django_db
def test_postgresql_connections_find_a_vanished_peer_within_a_minute():
    """Keepalive probes on an idle connection, and a bound on unacknowledged data: without them a
    network cut leaves requests waiting on the kernel's retransmission timeout (~15 minutes)."""
    connection.ensure_connection()
    with socket.socket(fileno=os.dup(connection.connection.fileno())) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        probes = (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT, socket.TCP_USER_TIMEOUT)
        assert [sock.getsockopt(socket.IPPROTO_TCP, option) for option in probes] == [30, 10, 3, 60000]


@requires_services("rabbitmq")
def test_settings_use_the_rabbitmq_layer_with_room_for_bursts():
    layer = settings.CHANNEL_LAYERS[DEFAULT_CHANNEL_LAYER]
    assert layer["BACKEND"] == "vantage6.layers.RabbitmqChannelLayer"
    assert layer["CONFIG"]["host"] == os.environ["V6_RABBITMQ_URI"].rstrip("/")
    assert min(layer["CONFIG"]["local_capacity"], layer["CONFIG"]["remote_capacity"]) >= 1000


async def _ping_peer(group: str, peer: subprocess.Popen) -> dict:
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    try:
        reply_to = await layer.new_channel()
        for _ in range(20):  # the peer may still be binding its queue: ping until it answers
            await layer.group_send(group, {"type": "ping", "reply_to": reply_to, "text": "hello"})
            try:
                return await asyncio.wait_for(layer.receive(reply_to), timeout=1)
            except TimeoutError:
                assert peer.poll() is None, "the peer process ended without answering"
        raise AssertionError("no answer from the peer process")
    finally:
        await layer.close()


@requires_services("rabbitmq")
def test_a_message_crosses_two_processes_through_rabbitmq():
    group = f"test-{uuid.uuid4().hex}"
    peer = subprocess.Popen(
        [sys.executable, "-m", "tests.api.channel_peer", group],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout.readline().strip() == "ready", peer.stderr.read()
        reply = asyncio.run(_ping_peer(group, peer))
        assert reply == {"type": "pong", "pid": peer.pid, "text": "hello"}
        assert peer.wait(timeout=30) == 0
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
        peer.stdout.close()
        peer.stderr.close()
