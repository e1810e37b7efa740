"""The packets that waited for a long-polling GET reach the websocket the session upgrades to before any
sent once it upgraded: a node's connect acknowledgement, ``sync`` and room notices keep their order."""

from __future__ import annotations

import asyncio

from tests.realtime.helpers import Sink
from vantage6.socketio.server import Server, _Waiter
from vantage6.socketio.store import POLLING, Session

SYNC, JOINED = '42/tasks,["sync"]', '42/tasks,["message","node joined room collaboration_1"]'


def test_packets_that_waited_for_polling_go_before_those_sent_while_the_get_is_answered():
    server = Server(namespaces={})
    session = Session("sid", POLLING)
    server.sessions[session.sid] = session
    session.outbox = [SYNC]

    async def answer_get(_status: int, _body: bytes, _content_type: str) -> None:
        await server.send(session, [JOINED])  # the connect's next packet, while the GET is answered

    session.waiter = _Waiter(answer_get, "key")
    sink = Sink()

    asyncio.run(server.upgraded(session, sink))

    assert sink.packets == [SYNC, JOINED]
