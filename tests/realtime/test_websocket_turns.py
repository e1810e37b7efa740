"""When the websocket protocol runs its handler: a received message from the turn of the loop that read
it, in order behind those whose handling still waits."""

from __future__ import annotations

import asyncio
import contextvars
import socket

import pytest

from tests.realtime.test_websocket_writes import HANDSHAKE, Transport, masked, received
from vantage6.websocket import TEXT, Factory, frame

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")


class Recorder:
    """A handler that notes its messages and echoes them; one of them (``hold``) waits for ``gate``."""

    def __init__(self, hold: str = "") -> None:
        self.messages: list[str] = []
        self.hold = hold
        self.gate: asyncio.Future[None] | None = None

    async def connect(self, scope: dict, send) -> None:
        self.send = send
        await send({"type": "websocket.accept"})

    async def receive(self, text_data: str | None) -> None:
        assert text_data is not None
        seen.set(text_data)
        if text_data == self.hold:
            self.gate = asyncio.get_running_loop().create_future()
            await self.gate
        self.messages.append(text_data)
        await self.send({"type": "websocket.send", "text": text_data})

    async def disconnect(self) -> None:
        pass


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.setblocking(False)
        peer.settimeout(5)
        yield ours, peer


async def opened(ours: socket.socket, handler: Recorder) -> tuple[object, Transport]:
    transport = Transport(ours)
    websocket = Factory(lambda _path: handler, max_message=1 << 20, scope_headers=()).buildProtocol(None)
    websocket.makeConnection(transport)
    websocket.dataReceived(HANDSHAKE)
    assert transport.written[0].startswith(b"HTTP/1.1 101 ")  # accepted in the same turn
    transport.drain()
    return websocket, transport


@pytest.mark.asyncio
async def test_a_message_is_handled_in_the_turn_that_read_it_and_answered_at_its_end(pair):
    ours, peer = pair
    handler = Recorder()
    websocket, _ = await opened(ours, handler)

    websocket.dataReceived(masked("a") + masked("b"))
    assert handler.messages == ["a", "b"]  # no turn of the loop has passed
    await asyncio.sleep(0)
    expected = frame(TEXT, b"a") + frame(TEXT, b"b")
    assert received(peer, len(expected)) == expected
    assert seen.get() == ""  # the handler's context is its own, as a task's


@pytest.mark.asyncio
async def test_messages_behind_a_waiting_one_keep_their_order(pair):
    ours, peer = pair
    handler = Recorder(hold="a")
    websocket, _ = await opened(ours, handler)

    websocket.dataReceived(masked("a") + masked("b"))
    websocket.dataReceived(masked("c"))
    await asyncio.sleep(0)
    assert handler.messages == [] and handler.gate is not None
    handler.gate.set_result(None)
    for _ in range(3):
        await asyncio.sleep(0)
    assert handler.messages == ["a", "b", "c"]
    websocket.dataReceived(masked("d"))
    assert handler.messages == ["a", "b", "c", "d"]  # no task left: in the turn that read it again
    await asyncio.sleep(0)
    expected = b"".join(frame(TEXT, text.encode()) for text in "abcd")
    assert received(peer, len(expected)) == expected
