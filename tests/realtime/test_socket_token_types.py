"""A socket handshake with a signed token whose claims have the wrong type (a ``sub`` that is a list, or an
object for a user or node; an expiry as text) or lack one: the socket gets no identity, no exception
escapes, and the server goes on serving sockets."""

from __future__ import annotations

import jwt
import pytest
import websocket
from django.conf import settings

from accounts.tokens import decode
from tests.realtime.helpers import token
from tests.realtime.rawhttp import escaped, log_size

pytestmark = pytest.mark.live


def _handshake(server, bearer: str) -> str:
    """What the server answers to a websocket of ``bearer`` connecting to ``/tasks``."""
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=20, header=[f"Authorization: Bearer {bearer}"])
    try:
        assert ws.recv().startswith("0{")  # the Engine.IO OPEN
        ws.send("40/tasks,{}")
        # the test server pings every 2 s: a connect answered later (a loaded machine) comes after a ping
        while (answer := ws.recv()) == "2":
            ws.send("3")
        return answer
    finally:
        ws.close()


ODD = {
    "sub as a list": lambda c: {**c, "sub": [c["sub"]]},
    "sub as an object": lambda c: {**c, "sub": {"id": c["sub"]}},
    "sub nested": lambda c: {**c, "sub": ["a", {"b": 1}]},
    "exp as text": lambda c: {**c, "exp": str(c["exp"])},
    "no exp": lambda c: {k: v for k, v in c.items() if k != "exp"},
}


@pytest.mark.parametrize("change", ODD)
def test_a_claim_of_the_wrong_type_is_no_identity(server, live_world, change):
    claims = ODD[change](decode(token(live_world.node_a)))
    since = log_size(server.log)

    answer = _handshake(server, jwt.encode(claims, settings.JWT_SECRET_KEY, algorithm="HS256"))

    assert answer.startswith("40/tasks,"), answer  # connected, as any socket without a usable token
    assert not escaped(server.log, since)
    assert _handshake(server, token(live_world.node_a)).startswith("40/tasks,")
