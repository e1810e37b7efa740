"""The websocket protocol of the server (RFC 6455), spoken with raw bytes to a live server process."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct

import pytest

from accounts.models import Authenticatable
from tests.realtime.helpers import eventually, token
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live

PATH = "/socket.io/?EIO=4&transport=websocket"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def handshake(key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==", **headers: str) -> dict[str, str]:
    base = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key.decode(),
        "Sec-WebSocket-Version": "13",
    }
    return {name: value for name, value in {**base, **headers}.items() if value is not None}


class Raw:
    """A websocket client on a plain TCP socket: every byte is the test's."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.data = b""

    def request(self, headers: dict[str, str], path: str = PATH) -> tuple[str, dict[str, str]]:
        """Send an upgrade request; the answer's status line and headers (lower-case names)."""
        lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.data:
            self._more()
        head, _, self.data = self.data.partition(b"\r\n\r\n")
        status, *fields = head.decode().split("\r\n")
        return status, {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}

    def open(self, **headers: str) -> str:
        """Upgrade; the Engine.IO OPEN packet the server sends first."""
        status, _ = self.request(handshake(**headers))
        assert status == "HTTP/1.1 101 Switching Protocols"
        opcode, payload = self.frame()
        assert opcode == TEXT and payload.startswith(b"0{")
        return payload.decode()

    def send(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
    ) -> None:
        self.sock.sendall(encode(opcode, payload, fin=fin, rsv=rsv, masked=masked))

    def text(self, text: str) -> None:
        self.send(TEXT, text.encode())

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.data += chunk

    def _take(self, size: int) -> bytes:
        while len(self.data) < size:
            self._more()
        taken, self.data = self.data[:size], self.data[size:]
        return taken

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the server (unmasked, unfragmented)."""
        first, second = self._take(2)
        assert first & 0x80 and not first & 0x70 and not second & 0x80, "a final, plain, unmasked frame"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._take(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._take(8))
        return first & 0x0F, self._take(size)

    def reply(self) -> tuple[int, bytes]:
        """The next frame from the server past the Engine.IO pings it sends on its own clock (one may
        come before the answer a test waits for)."""
        while (frame := self.frame()) == (TEXT, b"2"):
            pass
        return frame

    def packet(self) -> bytes:
        """The next Engine.IO packet from the server in a text frame, past its pings."""
        opcode, payload = self.reply()
        assert opcode == TEXT
        return payload

    def closed_with(self) -> int:
        """The code of the server's close frame (after any other frames), then the end of TCP."""
        while True:
            opcode, payload = self.frame()
            if opcode == CLOSE:
                break
        with pytest.raises(ConnectionError):
            self._more()
        return struct.unpack("!H", payload[:2])[0]

    def close(self) -> None:
        self.sock.close()


def encode(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """A client frame (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, (0x80 if masked else 0) | size))
    elif size < 2**16:
        head = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


@pytest.fixture
def raw(server):
    client = Raw(server.port)
    yield client
    client.close()


def test_the_handshake_answer_accepts_the_key_and_negotiates_no_extension(raw):
    key = base64.b64encode(os.urandom(16))
    status, headers = raw.request(
        handshake(key, **{"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    )
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["upgrade"].lower() == "websocket"
    assert headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"] == base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    assert "sec-websocket-extensions" not in headers
    opcode, payload = raw.frame()
    assert (opcode, json.loads(payload[1:])["upgrades"]) == (TEXT, [])


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-WebSocket-Key": None}, "400"),
        ({"Sec-WebSocket-Key": base64.b64encode(b"fifteen bytes!!").decode()}, "400"),
        ({"Sec-WebSocket-Key": "not base64 at all"}, "400"),
        ({"Sec-WebSocket-Version": None}, "400"),
        ({"Sec-WebSocket-Version": "8"}, "426"),  # an old draft's version
        ({"Connection": "keep-alive"}, "400"),
        ({"Host": None}, "400"),
    ],
    ids=["no key", "short key", "bad key", "no version", "version 8", "no connection upgrade", "no host"],
)
def test_a_malformed_handshake_is_refused_without_upgrade(raw, headers, status):
    answer, fields = raw.request(handshake(**headers))
    assert answer.split()[1] == status
    assert "sec-websocket-accept" not in fields and "upgrade" not in fields
    if status == "426":
        assert fields["sec-websocket-version"] == "13"
    raw.data += b"".join(iter(lambda: raw.sock.recv(65536), b""))  # then the server closes


def test_no_websocket_elsewhere_than_socket_io(raw):
    answer, fields = raw.request(handshake(), path="/api/version")
    assert answer.split()[1] == "404"
    assert "sec-websocket-accept" not in fields


def _oversize(raw: Raw) -> None:
    # Only the header of a 2 MB frame: the server refuses it before its payload comes.
    raw.sock.sendall(struct.pack("!BBQ", 0x81, 0xFF, 2_000_000) + os.urandom(4))


def _oversize_fragments(raw: Raw) -> None:
    for _ in range(3):  # 1.5 MB in three fragments
        raw.send(TEXT if _ == 0 else 0, b"4" * 500_000, fin=False)


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (lambda raw: raw.send(TEXT, b"40/tasks,{}", masked=False), 1002),
        (lambda raw: raw.send(TEXT, b"40/tasks,{}", rsv=4), 1002),  # RSV1: no extension was negotiated
        (lambda raw: raw.send(0x3, b"x"), 1002),
        (lambda raw: raw.send(PING, b"x" * 126), 1002),
        (lambda raw: raw.send(PING, b"x", fin=False), 1002),
        (lambda raw: raw.send(0x0, b"x"), 1002),  # a continuation of nothing
        (lambda raw: (raw.send(TEXT, b"4", fin=False), raw.send(TEXT, b"0")), 1002),
        (lambda raw: raw.send(CLOSE, b"\x03"), 1002),
        (lambda raw: raw.send(CLOSE, struct.pack("!H", 1005)), 1002),
        (lambda raw: raw.send(CLOSE, struct.pack("!H", 999)), 1002),
        (_oversize, 1009),
        (_oversize_fragments, 1009),
        (lambda raw: raw.send(TEXT, b'42/tasks,["\xff"]'), 1007),
        (lambda raw: (raw.send(TEXT, b"4\xc3", fin=False), raw.send(0, b"(", fin=True)), 1007),
        (lambda raw: raw.send(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
    ids=[
        "unmasked",
        "rsv1",
        "unknown opcode",
        "long ping",
        "fragmented ping",
        "lone continuation",
        "new message inside a fragmented one",
        "one-byte close",
        "close code 1005",
        "close code 999",
        "oversize frame",
        "oversize fragmented message",
        "text not utf-8",
        "fragmented text not utf-8",
        "close reason not utf-8",
    ],
)
def test_a_protocol_violation_closes_with_its_code(raw, attack, code):
    raw.open()
    attack(raw)
    assert raw.closed_with() == code


def test_a_ping_is_answered_with_its_payload(raw):
    raw.open()
    raw.send(PING, b"are you there")
    assert raw.reply() == (PONG, b"are you there")


def test_a_fragmented_text_message_is_reassembled_around_a_ping(raw):
    raw.open()
    raw.send(TEXT, b"40/ta", fin=False)
    raw.send(PING, b"between")
    raw.send(0x0, b"sks,", fin=False)
    raw.send(0x0, b"{}", fin=True)
    assert raw.reply() == (PONG, b"between")
    assert raw.packet().startswith(b'40/tasks,{"sid":')


@pytest.mark.parametrize("size", [125, 126, 65_535, 65_536, 999_000])
def test_a_message_within_the_limit_is_taken_whatever_its_length_encoding(raw, size):
    raw.open()
    # An Engine.IO MESSAGE of the /tasks namespace's CONNECT, padded with spaces the JSON decoder skips.
    packet = b"40/tasks,{}"
    raw.send(TEXT, packet + b" " * (size - len(packet)))
    assert raw.packet().startswith(b'40/tasks,{"sid":')


def test_the_close_handshake_is_echoed_and_the_server_closes_tcp(raw):
    raw.open()
    raw.send(CLOSE, struct.pack("!H", 1000) + b"bye")
    assert raw.closed_with() == 1000


def test_after_the_violations_a_node_still_connects_and_identifies(server, live_world):
    """The server survives its failed connections: a node's socket works."""
    raw = Raw(server.port)
    try:
        raw.send(TEXT, b"", masked=False)  # before the handshake: not a request at all
        status, _ = raw.request(handshake())
        assert status.split()[1] == "400"
    finally:
        raw.close()
    raw = Raw(server.port)
    try:
        raw.open(Authorization=f"Bearer {token(live_world.node_a)}")
        raw.text("40/tasks,{}")
        assert raw.packet().startswith(b'40/tasks,{"sid":')
    finally:
        raw.close()


def test_a_dropped_connection_ends_the_session(server, live_world):
    """TCP gone without a close frame: the node's session ends and it is marked offline."""
    node = live_world.node_a
    raw = Raw(server.port)
    raw.open(Authorization=f"Bearer {token(node)}")
    raw.text("40/tasks,{}")
    assert raw.packet().startswith(b'40/tasks,{"sid":')
    status = Authenticatable.objects.using(LIVE).filter(pk=node.pk).values_list("status", flat=True)
    assert eventually(lambda: status.get() == "online")
    raw.close()
    assert eventually(lambda: status.get() == "offline")


def test_a_connection_object_has_slots_only():
    """What every idle websocket costs the server: no per-instance dictionary."""
    from vantage6.websocket import Factory, WebSocket

    socket = Factory(lambda _path: None, max_message=1, scope_headers=()).buildProtocol(None)
    assert isinstance(socket, WebSocket)
    assert not hasattr(socket, "__dict__")
