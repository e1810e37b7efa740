"""A node (or a user) that connects its namespace and leaves it again in a loop, in one session: each
connect records a connection, reads the rights and tells every user socket of its rooms; so a connect
takes as much of the session's packet allowance as the work of many packets."""

from __future__ import annotations

import pytest
import websocket

from nodes.models import SocketConnection
from tests.realtime.helpers import token, user_socket
from tests.realtime.live import LIVE
from vantage6.socketio.server import CONNECTS_AT_ONCE

pytestmark = pytest.mark.live

CYCLES = 50


def test_connecting_a_namespace_in_a_loop_tells_the_users_only_as_often_as_the_allowance_bears(
    server, live_world, sockets
):
    watching = user_socket(sockets, server.url, live_world.org_a)
    node = live_world.node_a
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=30, header=[f"Authorization: Bearer {token(node)}"])
    try:
        assert ws.recv().startswith("0{")
        for _ in range(CYCLES):
            ws.send("40/tasks,{}")
            ws.send("41/tasks,")
        heard = [
            name for name, data in watching.received(3) if name == "node-online" and data["id"] == node.pk
        ]
    finally:
        ws.close()

    assert 1 <= len(heard) <= CONNECTS_AT_ONCE + 2  # and one a second
    assert SocketConnection.objects.using(LIVE).filter(identity_id=node.pk).count() <= 1
