"""A session that moves to another process for its websocket upgrade counts there towards its client's
bound of connected sockets: over it, the oldest socket there ends, but not one whose connect is under way
(its admission is not undone halfway; it bounds the others itself once it arrived). The process the
session moves to holds that connect before its admission (``hooked_server``'s ``hold-admission``)."""

from __future__ import annotations

import os

import pytest
import websocket

from tests.conftest import requires_services
from tests.realtime.helpers import PollingSession, eventually, hears, token
from tests.realtime.live import HOOKED, LONG_PINGS, Daphne, hooked_servers, open_tasks_socket
from tests.realtime.test_socket_rights_takeover import _armed, _upgrade, _websocket

pytestmark = [pytest.mark.live, requires_services("rabbitmq"), pytest.mark.usefixtures("broker_only")]

NODE_SESSIONS = 2  # connected sockets of one node in one process


@pytest.fixture(scope="module")
def hooked(live_db, live_folder):
    """The hooks' folder, a hooked server process (where the session moves to) and a plain one."""
    env = {
        "V6_RABBITMQ_URI": os.environ["V6_RABBITMQ_URI"],
        "V6_SOCKET_SESSIONS_PER_NODE": str(NODE_SESSIONS),
        **LONG_PINGS,
    }
    with hooked_servers(live_db, live_folder, [HOOKED, None], **env) as (folder, servers):
        yield folder, *servers


def _connected(host: Daphne, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to ``host`` connected to ``/tasks``."""
    ws = open_tasks_socket(host.port, bearer)
    assert hears(ws, lambda frame: frame.startswith('40/tasks,{"sid":'), 10)
    return ws


def _closed(ws: websocket.WebSocket, seconds: float) -> bool:
    """Whether the server closes ``ws`` within ``seconds``."""
    ws.settimeout(seconds)
    try:
        while True:
            frame = ws.recv()
            if frame == "2":
                ws.send("3")
            elif not frame:  # the close frame
                return True
    except websocket.WebSocketConnectionClosedException:
        return True
    except websocket.WebSocketTimeoutException:
        return False


def test_a_session_moving_in_over_the_bound_ends_a_settled_socket_not_one_connecting(hooked, live_world):
    folder, here, there = hooked
    bearer = token(live_world.node_a)
    connecting = _connected(here, bearer)  # the oldest of the node's sockets here: it connects again below
    settled = _connected(here, bearer)
    polling = PollingSession([there.url], bearer)
    polling.send("40/tasks,{}")
    assert eventually(lambda: any(packet.startswith('40/tasks,{"sid":') for packet in polling.poll()))
    sockets = [connecting, settled]
    try:
        with _armed(folder, here, "hold-admission"):
            connecting.send("40/tasks,{}")
            assert eventually(lambda: (folder / f"{here.port}.admitting").exists())
            moved = _websocket(here, polling.sid)  # taken over: one socket more than the bound here
            sockets.append(moved)
            _upgrade(moved)
            assert _closed(settled, 10)
        assert hears(connecting, lambda frame: frame.startswith('40/tasks,{"sid":'), 10)
        assert not _closed(connecting, 1)
        assert not _closed(moved, 0.5)
    finally:
        for ws in sockets:
            ws.close()
