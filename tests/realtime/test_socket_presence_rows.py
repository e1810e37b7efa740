"""An identity is online while any of its sockets is connected, and offline once the last one closed:
whatever order its sockets close in, and also when a connect of it was refused meanwhile."""

from __future__ import annotations

import pytest
import requests
import websocket
from django.utils import timezone

from accounts.models import LoginSession
from accounts.tokens import decode
from tests.realtime.helpers import eventually, make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.test_socket_rights_takeover import _hears

CONNECTED = '40/tasks,{"sid":'


def _open(host: Daphne, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to ``host``, its Engine.IO handshake done."""
    url = f"ws://127.0.0.1:{host.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=30, header=[f"Authorization: Bearer {bearer}"])
    assert ws.recv().startswith("0{")
    return ws


def _connect(host: Daphne, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to ``host``, connected to ``/tasks`` and in its rooms."""
    ws = _open(host, bearer)
    ws.send("40/tasks,{}")
    assert _hears(ws, lambda frame: frame.startswith(CONNECTED), 10)
    return ws


def _status(host: Daphne, path: str, admin: str) -> str:
    headers = {"Authorization": f"Bearer {admin}"}
    response = requests.get(f"{host.url}/api/{path}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["status"]


def _becomes(host: Daphne, path: str, admin: str, status: str) -> bool:
    return bool(eventually(lambda: _status(host, path, admin) == status, timeout=5))


@pytest.mark.live
def test_a_refused_connect_leaves_the_older_socket_of_the_identity_marking_it_offline(server, live_world):
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    older = _connect(server, token(user))
    sockets = [older]
    try:
        # A second login's socket, whose login ends between its handshake and its connect.
        ended = token(user)
        refused = _open(server, ended)
        sockets.append(refused)
        LoginSession.objects.using(LIVE).filter(pk=decode(ended)["sid"]).update(revoked_at=timezone.now())
        refused.send("40/tasks,{}")
        assert _hears(refused, lambda frame: frame == '42/tasks,["invalid_token"]', 10)
        assert _status(server, f"user/{user.pk}", admin) == "online"

        older.close()

        assert _becomes(server, f"user/{user.pk}", admin, "offline")
    finally:
        for ws in sockets:
            ws.close()
