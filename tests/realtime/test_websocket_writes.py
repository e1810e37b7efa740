"""How the websocket protocol writes its frames: those of one turn of the loop together, straight to the
socket while the transport holds nothing back, through the transport's buffer otherwise (order kept)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from twisted.internet.address import IPv4Address

from vantage6.websocket import NORMAL, TEXT, Factory, close_frame, frame

HANDSHAKE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Transport:
    """Twisted's TCP transport as far as the protocol uses it: what it is given to write is buffered
    (``written``) until ``drain``."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.connected = True
        self.disconnecting = False
        self.dataBuffer = b""
        self._tempDataBuffer: list[bytes] = []
        self.written: list[bytes] = []
        self.producer = None

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self._tempDataBuffer.append(data)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def drain(self) -> None:
        self._tempDataBuffer = []

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.connected = False


class Sender:
    """A handler that accepts, then sends ``texts`` for every message it receives (and closes after
    them if told)."""

    def __init__(self, texts: list[str], close: bool = False) -> None:
        self.texts = texts
        self.close = close

    async def connect(self, scope: dict, send) -> None:
        self.send = send
        await send({"type": "websocket.accept"})

    async def receive(self, text_data: str | None) -> None:
        for text in self.texts:
            await self.send({"type": "websocket.send", "text": text})
        if self.close:
            await self.send({"type": "websocket.close"})

    async def disconnect(self) -> None:
        pass


def masked(text: str) -> bytes:
    mask, payload = os.urandom(4), text.encode()
    return bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(5)
    yield ours, peer
    ours.close()
    peer.close()


async def opened(ours: socket.socket, texts: list[str], close: bool = False) -> tuple[object, Transport]:
    transport = Transport(ours)
    websocket = Factory(
        lambda _path: Sender(texts, close), max_message=1 << 20, scope_headers=()
    ).buildProtocol(None)
    websocket.makeConnection(transport)
    websocket.dataReceived(HANDSHAKE)
    await turns()
    assert transport.written and transport.written[0].startswith(b"HTTP/1.1 101 ")
    return websocket, transport


def received(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += peer.recv(size - len(data))
    return data


@pytest.mark.asyncio
async def test_frames_of_one_turn_go_straight_to_the_socket_in_one_write(pair):
    ours, peer = pair
    websocket, transport = await opened(ours, ["a", "bb", "ccc"])
    transport.drain()  # the transport wrote the handshake's answer
    websocket.dataReceived(masked("go"))
    await turns()
    expected = frame(TEXT, b"a") + frame(TEXT, b"bb") + frame(TEXT, b"ccc")
    assert received(peer, len(expected)) == expected
    assert len(transport.written) == 1  # the answer only


@pytest.mark.asyncio
async def test_frames_wait_behind_what_the_transport_holds(pair):
    ours, peer = pair
    websocket, transport = await opened(ours, ["a", "bb"])  # the answer is still buffered
    websocket.dataReceived(masked("go"))
    await turns()
    assert transport.written[1:] == [frame(TEXT, b"a") + frame(TEXT, b"bb")]
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(1)


@pytest.mark.asyncio
async def test_what_the_socket_does_not_take_goes_through_the_transport(pair):
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = "x" * 60_000
    websocket, transport = await opened(ours, [big])
    transport.drain()
    websocket.dataReceived(masked("go"))
    await turns()
    expected = frame(TEXT, big.encode())
    assert len(transport.written) == 2
    rest = transport.written[1]
    assert 0 < len(rest) < len(expected)
    assert received(peer, len(expected) - len(rest)) + rest == expected


@pytest.mark.asyncio
async def test_a_close_follows_the_frames_of_its_turn(pair):
    ours, peer = pair
    websocket, transport = await opened(ours, ["a"], close=True)
    transport.drain()
    websocket.dataReceived(masked("go"))
    await turns()
    assert received(peer, 3) == frame(TEXT, b"a")
    assert transport.written[1:] == [close_frame(NORMAL)] and transport.disconnecting


def test_frames_left_by_a_loop_that_ended_hold_nothing_up_in_the_next(pair):
    ours, _ = pair
    ended = asyncio.new_event_loop()

    websocket, _ = ended.run_until_complete(opened(ours, []))
    ended.call_soon(websocket._write, frame(TEXT, b"never"))
    ended.call_soon(ended.stop)  # the loop ends with the turn: the frame's write never comes
    ended.run_forever()
    ended.close()
    other, other_peer = socket.socketpair()
    other.setblocking(False)
    other_peer.settimeout(5)

    async def next_loop() -> None:
        websocket, transport = await opened(other, ["a"])
        transport.drain()
        websocket.dataReceived(masked("go"))
        await turns()

    try:
        asyncio.run(next_loop())
        assert received(other_peer, 3) == frame(TEXT, b"a")
    finally:
        other.close()
        other_peer.close()
