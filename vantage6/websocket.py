"""A lean RFC 6455 server side for the websockets daphne upgrades, driving the ASGI application.

daphne parses the upgrade request; it then builds a protocol with ``ws_factory.buildProtocol``,
moves the TCP transport to it and replays the request's bytes into it. ``Factory`` builds a
``WebSocket``: it checks the handshake (400 without upgrade for a malformed one), runs the ASGI
websocket application with a scope of only what the application reads, answers ``101`` when the
application accepts, and speaks the frames itself: client frames masked, RSV bits zero (no extension
is negotiated), known opcodes, control frames unfragmented and at most 125 bytes, a message at most
``max_message`` bytes (close 1009), text valid UTF-8 (close 1007), pings answered, the close
handshake echoed. Anything else fails the connection with close 1002.

An idle connection is one slotted object, the application's coroutine and the one future it awaits:
no queue, no copy of the request's headers, no timer (keep-alive is the application's own ping).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

logger = logging.getLogger("vantage6.websocket")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = b"13"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL, PROTOCOL_ERROR, NO_STATUS, ABNORMAL, INVALID_DATA, TOO_BIG, INTERNAL_ERROR = (
    1000,
    1002,
    1005,
    1006,
    1007,
    1009,
    1011,
)
# Close codes a client may send: the defined ones and those for applications (RFC 6455 7.4).
VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)))
MAX_REQUEST_BYTES = 64 * 1024  # daphne (Twisted) bounds the request head already
# Messages waiting for the application: reading pauses beyond this many.
INBOX_LIMIT = 16
HANDSHAKE, CONNECTING, OPEN, CLOSED = range(4)

Application = Callable[
    [dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]
]


class ProtocolError(Exception):
    """The client broke the protocol: the connection fails with ``code`` (an HTTP status while the
    handshake is checked, a close code afterwards)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answer to a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked (server) frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 2**16:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


def unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def _http_error(status: bytes, message: str, extra: bytes = b"") -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n" + extra + b"\r\n" + body
    )


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",")}


class Factory:
    """Builds the websockets of one server; keeps those whose application still runs (``sockets``)."""

    def __init__(
        self, application: Application, *, max_message: int, scope_headers: tuple[bytes, ...]
    ) -> None:
        self.application = application
        self.max_message = max_message
        # The request headers the application reads (lower case): the scope carries only these.
        self.scope_headers = scope_headers
        self.sockets: set[WebSocket] = set()

    def buildProtocol(self, _address: object) -> WebSocket:
        return WebSocket(self)


@implementer(IProtocol)
class WebSocket:
    """One websocket connection (server side)."""

    __slots__ = (
        "_raw_query_string",  # set by daphne before the request is replayed
        "accept",
        "buffer",
        "factory",
        "inbox",
        "message",
        "opcode",
        "paused",
        "state",
        "task",
        "transport",
        "waiter",
    )

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.transport: Any = None
        self.state = HANDSHAKE
        self.accept = b""  # the Sec-WebSocket-Accept of the answer, until the application accepts
        self.buffer: bytes | bytearray = b""
        self.opcode = 0  # of the fragmented message being received
        self.message: bytearray | None = None  # its fragments so far
        self.inbox: list[dict] | None = None  # events the application has not received yet
        self.waiter: asyncio.Future | None = None  # the application waiting for the next event
        self.task: asyncio.Future | None = None
        self.paused = False

    # --- Twisted's protocol interface ------------------------------------------------------------------
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        if getattr(transport, "producer", None) is not None:
            # The HTTP connection made itself the transport's producer: it would stay alive, with its
            # request and headers, as long as the websocket.
            transport.unregisterProducer()
        self.factory.sockets.add(self)

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        if self.buffer:
            if not isinstance(self.buffer, bytearray):
                self.buffer = bytearray(self.buffer)
            self.buffer += data
        else:
            self.buffer = data
        if self.state == HANDSHAKE:
            self._handshake()
        elif self.state == OPEN:
            try:
                self._frames()
            except ProtocolError as exc:
                self._fail(exc.code, str(exc))
        elif len(self.buffer) > self.factory.max_message + 14:
            self.drop()  # a flood before the handshake's answer

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        was_closed, self.state = self.state == CLOSED, CLOSED
        self.buffer, self.message = b"", None
        if self.task is None:
            self.factory.sockets.discard(self)
        elif not was_closed:
            self._deliver({"type": "websocket.disconnect", "code": ABNORMAL})

    # --- the opening handshake -------------------------------------------------------------------------
    def _handshake(self) -> None:
        head, found, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if not found:
            if len(self.buffer) > MAX_REQUEST_BYTES:
                self._refuse(b"400 Bad Request", "Request head too large")
            return
        self.buffer = rest
        request_line, *lines = head.split(b"\r\n")
        headers: dict[bytes, bytes] = {}
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon:
                self._refuse(b"400 Bad Request", "Malformed header")
                return
            name, value = name.strip().lower(), value.strip()
            headers[name] = headers[name] + b", " + value if name in headers else value
        parts = request_line.split(b" ")
        try:
            self._check(parts, headers)
        except ProtocolError as exc:
            extra = b"Sec-WebSocket-Version: 13\r\n" if exc.code == 426 else b""
            self._refuse(b"426 Upgrade Required" if exc.code == 426 else b"400 Bad Request", str(exc), extra)
            return
        self.state = CONNECTING
        self.accept = accept_key(headers[b"sec-websocket-key"])
        kept = self.factory.scope_headers
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "path": unquote(urlsplit(parts[1].decode("ascii")).path),
            "query_string": getattr(self, "_raw_query_string", b""),
            "headers": [(name, value) for name, value in headers.items() if name in kept],
            "subprotocols": [],
        }
        if hasattr(self, "_raw_query_string"):
            del self._raw_query_string
        self._deliver({"type": "websocket.connect"})
        self.task = asyncio.ensure_future(self.factory.application(scope, self._receive, self._send))
        self.task.add_done_callback(self._ended)

    @staticmethod
    def _check(parts: list[bytes], headers: dict[bytes, bytes]) -> None:
        """Refuse (ProtocolError with an HTTP status) what is not a websocket opening handshake."""
        if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
            raise ProtocolError(400, "A websocket handshake is a GET of HTTP/1.1")
        try:
            parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(400, "Invalid request target") from None
        if not headers.get(b"host"):
            raise ProtocolError(400, "Missing Host header")
        if b"websocket" not in _tokens(headers.get(b"upgrade", b"")):
            raise ProtocolError(400, "Missing Upgrade: websocket")
        if b"upgrade" not in _tokens(headers.get(b"connection", b"")):
            raise ProtocolError(400, "Missing Connection: Upgrade")
        if b"sec-websocket-version" not in headers:
            raise ProtocolError(400, "Missing Sec-WebSocket-Version")
        if headers[b"sec-websocket-version"] != VERSION:
            raise ProtocolError(426, "Unsupported websocket version (13 is supported)")
        try:
            key = base64.b64decode(headers.get(b"sec-websocket-key", b""), validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 16:
            raise ProtocolError(400, "Invalid Sec-WebSocket-Key")

    def _refuse(self, status: bytes, message: str, extra: bytes = b"") -> None:
        self.state = CLOSED
        self.buffer = b""
        self.transport.write(_http_error(status, message, extra))
        self.transport.loseConnection()

    # --- frames from the client -----------------------------------------------------------------------
    def _frames(self) -> None:
        data, offset, limit = self.buffer, 0, self.factory.max_message
        end = len(data)
        while self.state == OPEN and end - offset >= 2:
            first, second = data[offset], data[offset + 1]
            fin, opcode, size, start = first & 0x80, first & 0x0F, second & 0x7F, offset + 2
            if first & 0x70:
                raise ProtocolError(PROTOCOL_ERROR, "reserved bits set without an extension")
            if not second & 0x80:
                raise ProtocolError(PROTOCOL_ERROR, "unmasked client frame")
            if opcode >= CLOSE:
                if opcode > PONG:
                    raise ProtocolError(PROTOCOL_ERROR, "unknown opcode")
                if not fin or size > 125:
                    raise ProtocolError(PROTOCOL_ERROR, "fragmented or long control frame")
            elif opcode > BINARY:
                raise ProtocolError(PROTOCOL_ERROR, "unknown opcode")
            elif (opcode == CONTINUATION) != (self.message is not None):
                raise ProtocolError(PROTOCOL_ERROR, "unexpected continuation or new message")
            if size == 126:
                if end - start < 2:
                    break
                (size,) = struct.unpack_from("!H", data, start)
                start += 2
                if size < 126:
                    raise ProtocolError(PROTOCOL_ERROR, "length not minimally encoded")
            elif size == 127:
                if end - start < 8:
                    break
                (size,) = struct.unpack_from("!Q", data, start)
                start += 8
                if size < 2**16 or size >= 2**63:
                    raise ProtocolError(PROTOCOL_ERROR, "invalid length")
            received = len(self.message) if self.message is not None else 0
            if opcode < CLOSE and received + size > limit:
                raise ProtocolError(TOO_BIG, f"message larger than {limit} bytes")
            if end - start < 4 + size:
                break
            payload = unmask(bytes(data[start + 4 : start + 4 + size]), bytes(data[start : start + 4]))
            offset = start + 4 + size
            if opcode >= CLOSE:
                self._control(opcode, payload)
                continue
            if fin and opcode != CONTINUATION:
                self._message(opcode, payload)
            elif opcode != CONTINUATION:
                self.opcode, self.message = opcode, bytearray(payload)
            else:
                assert self.message is not None
                self.message += payload
                if fin:
                    message, self.message = bytes(self.message), None
                    self._message(self.opcode, message)
        if self.state == OPEN:
            self.buffer = data[offset:] if offset < end else b""

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == BINARY:
            self._deliver({"type": "websocket.receive", "bytes": payload})
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(INVALID_DATA, "text message not valid UTF-8") from None
        self._deliver({"type": "websocket.receive", "text": text})

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.transport.write(frame(PONG, payload))
        elif opcode == CLOSE:
            code = NO_STATUS
            if len(payload) == 1:
                raise ProtocolError(PROTOCOL_ERROR, "close frame of one byte")
            if payload:
                (code,) = struct.unpack_from("!H", payload)
                if code not in VALID_CLOSE_CODES:
                    raise ProtocolError(PROTOCOL_ERROR, "invalid close code")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(INVALID_DATA, "close reason not valid UTF-8") from None
            # The close handshake: its code echoed, then the server closes the TCP connection.
            self._close(frame(CLOSE, payload[:2]), code)

    def _fail(self, code: int, reason: str) -> None:
        logger.info("websocket closed, %d: %s", code, reason)
        self._close(close_frame(code), code)

    def _close(self, closing: bytes, code: int) -> None:
        self.state = CLOSED
        self.buffer, self.message = b"", None
        self.transport.write(closing)
        self.transport.loseConnection()
        self._deliver({"type": "websocket.disconnect", "code": code})

    def drop(self) -> bool:
        """Drop the connection at once, without a close frame (a client then reconnects, maybe to
        another server); whether it was still open."""
        if self.state == CLOSED:
            return False
        self.state = CLOSED
        self.buffer, self.message = b"", None
        self.transport.abortConnection()
        if self.task is not None:
            self._deliver({"type": "websocket.disconnect", "code": ABNORMAL})
        return True

    # --- the ASGI application ---------------------------------------------------------------------------
    def _deliver(self, event: dict) -> None:
        """Hand an event to the application (at once if it waits for one)."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(event)
            return
        if self.inbox is None:
            self.inbox = []
        self.inbox.append(event)
        if len(self.inbox) >= INBOX_LIMIT and not self.paused and self.state != CLOSED:
            self.paused = True  # the client sends faster than the application reads
            self.transport.pauseProducing()

    def _receive(self) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.inbox:
            future.set_result(self.inbox.pop(0))
            if not self.inbox:
                self.inbox = None
                if self.paused:
                    self.paused = False
                    self.transport.resumeProducing()
        else:
            self.waiter = future
        return future

    async def _send(self, message: dict) -> None:
        kind = message["type"]
        if self.state == CONNECTING:
            if kind == "websocket.accept":
                self.state = OPEN
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + self.accept + b"\r\n\r\n"
                )
                self.accept = b""
                if self.buffer:  # frames sent before the answer
                    self.dataReceived(b"")
            elif kind == "websocket.close":
                self._refuse(b"403 Forbidden", "Access denied")
                self._deliver({"type": "websocket.disconnect", "code": message.get("code") or NORMAL})
            else:
                raise ValueError(f"{kind} before websocket.accept")
        elif self.state == OPEN:
            if kind == "websocket.send":
                if (text := message.get("text")) is not None:
                    self.transport.write(frame(TEXT, text.encode()))
                elif (data := message.get("bytes")) is not None:
                    self.transport.write(frame(BINARY, data))
            elif kind == "websocket.close":
                code = message.get("code") or NORMAL
                self._close(close_frame(code, message.get("reason") or ""), code)

    def _ended(self, task: asyncio.Future) -> None:
        """The application returned: a connection it left open is closed."""
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("Exception inside the websocket application", exc_info=error)
            code = INTERNAL_ERROR
        else:
            code = NORMAL
        if self.state == CONNECTING:
            self._refuse(b"500 Internal Server Error", "Internal server error")
        elif self.state == OPEN:
            self._close(close_frame(code), code)
        self.inbox = self.waiter = None
        self.factory.sockets.discard(self)
