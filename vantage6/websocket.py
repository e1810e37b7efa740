"""A lean RFC 6455 server side for the websockets daphne upgrades, calling their handler directly.

daphne parses the upgrade request; it then builds a protocol with ``ws_factory.buildProtocol``,
moves the TCP transport to it and replays the request's bytes into it. ``Factory`` builds a
``WebSocket``: it checks the handshake (400 without upgrade for a malformed one, 404 for a path
without a ``Handler``), hands the handler an ASGI scope with only the headers it reads, answers
``101`` when the handler accepts (ASGI's ``websocket.accept`` through ``send``), and speaks the frames
itself: client frames masked, RSV bits zero (no extension is negotiated), known opcodes, control
frames unfragmented and at most 125 bytes, a message at most ``max_message`` bytes (close 1009), text
valid UTF-8 (close 1007), pings answered, the close handshake echoed. Anything else fails the
connection with close 1002. The frames of one turn of the loop are written together at its end,
straight to the socket while the transport has nothing buffered.

The handler's events run one at a time, in order, from the turn of the loop that received them: a task
exists only while the handler waits (for the database, another process) with events left. An
idle connection is one slotted object and its handler (no task, coroutine, queue, copy of the request's
headers or timer; keep-alive is the handler's own ping).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from vantage6 import eager

logger = logging.getLogger("vantage6.websocket")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = b"13"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG, INTERNAL_ERROR = 1000, 1002, 1007, 1009, 1011
# Close codes a client may send: the defined ones and those for applications (RFC 6455 7.4).
VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)))
MAX_REQUEST_BYTES = 64 * 1024  # daphne (Twisted) bounds the request head already
# Events waiting for the handler: reading pauses beyond this many.
INBOX_LIMIT = 16
# Frames longer than this go through the transport's buffer instead of straight to the socket.
DIRECT_LIMIT = 64 * 1024
# A closed connection whose last frames the client leaves unread is dropped after this long (TCP would
# keep it, and its buffer, for as long as the client lives).
CLOSE_SECONDS = 30
HANDSHAKE, CONNECTING, OPEN, CLOSED = range(4)
CONNECTED, RECEIVED, DISCONNECTED = range(3)  # the handler's events

Send = Callable[[dict], Awaitable[None]]


class Handler(Protocol):
    """What serves one websocket; its methods are called one at a time, in order."""

    async def connect(self, scope: dict, send: Send) -> None:
        """The upgrade request: answer with ``send`` (ASGI ``websocket.accept`` or ``websocket.close``),
        which then takes the ASGI websocket messages."""

    async def receive(self, text_data: str | None) -> None:
        """A message (None for a binary one)."""

    async def disconnect(self) -> None:
        """The connection ended (the last call)."""


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


class _Turn:
    """The sockets with frames queued in this turn of the loop: written together at its end."""

    def __init__(self) -> None:
        self.sockets: list[WebSocket] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, socket: WebSocket) -> None:
        loop = asyncio.get_running_loop()
        if not self.sockets or self.loop is not loop:
            self.sockets, self.loop = [], loop  # the sockets of a closed loop went with it
            loop.call_soon(self.flush)
        self.sockets.append(socket)

    def flush(self) -> None:
        sockets, self.sockets = self.sockets, []
        for socket in sockets:
            socket._flush()


_turn = _Turn()


class Factory:
    """Builds the websockets of one server; keeps those whose handler has not ended (``sockets``)."""

    def __init__(
        self,
        handler_for: Callable[[str], Handler | None],
        *,
        max_message: int,
        scope_headers: tuple[bytes, ...],
    ) -> None:
        # The handler of a new websocket to a path (None: no websocket there).
        self.handler_for = handler_for
        self.max_message = max_message
        # The request headers the handlers read (lower case): the scope carries only these.
        self.scope_headers = scope_headers
        self.sockets: set[WebSocket] = set()

    def buildProtocol(self, _address: object) -> WebSocket:
        return WebSocket(self)


class WebSocket:
    """One websocket connection (server side): a Twisted protocol."""

    __slots__ = (
        "_raw_query_string",  # set by daphne before the request is replayed
        "accept",
        "blocked",
        "buffer",
        "factory",
        "handler",
        "inbox",
        "message",
        "opcode",
        "outgoing",
        "paused",
        "release",
        "state",
        "task",
        "transport",
    )

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.transport: Any = None
        self.state = HANDSHAKE
        self.accept = b""  # the Sec-WebSocket-Accept of the answer, until the handler accepts
        self.buffer: bytes | bytearray = b""
        self.opcode = 0  # of the fragmented message being received
        self.message: bytearray | None = None  # its fragments so far
        self.handler: Handler | None = None
        self.inbox: list[tuple[int, Any]] | None = None  # events for the handler
        # Runs them while there are any: True during the first step, then a task while the handler waits.
        self.task: asyncio.Task | bool | None = None
        self.paused = False  # reading, while the handler has INBOX_LIMIT events waiting
        self.blocked = False  # reading, while the transport's write buffer is full
        self.outgoing: list[bytes] | None = None  # frames of this turn of the loop, not written yet
        # Called once the socket no longer counts as open: its share of its client's connections.
        self.release: Callable[[], None] | None = None

    # --- Twisted's protocol interface ------------------------------------------------------------------
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        if getattr(transport, "producer", None) is not None:
            # The HTTP connection made itself the transport's producer: it would stay alive, with its
            # request and headers, as long as the websocket.
            transport.unregisterProducer()
        # The transport tells when its write buffer is full: a client that does not read what it asks
        # for (pongs, acks) is read no further until it does, so that the answers cannot pile up.
        transport.registerProducer(self, True)
        self.factory.sockets.add(self)

    def connectionMade(self) -> None:
        pass

    def pauseProducing(self) -> None:
        if not self.blocked:
            self.blocked = True
            if not self.paused:
                self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.blocked:
            self.blocked = False
            if not self.paused:
                self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass  # the connection is lost: connectionLost follows

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
        if self.handler is None:
            self._forget()
        elif not was_closed:
            self._deliver(DISCONNECTED)

    def _forget(self) -> None:
        """The socket no longer counts as open (its connection is lost, and its handler ended)."""
        self.factory.sockets.discard(self)
        release, self.release = self.release, None
        if release is not None:
            release()

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
        path = unquote(parts[1].partition(b"?")[0].decode("ascii"))  # as for HTTP: no urlsplit ("//[")
        self.handler = self.factory.handler_for(path)
        if self.handler is None:
            self._refuse(b"404 Not Found", "No websocket at this path")
            return
        self.state = CONNECTING
        self.accept = accept_key(headers[b"sec-websocket-key"])
        kept = self.factory.scope_headers
        peer = self.transport.getPeer()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "path": path,
            "query_string": getattr(self, "_raw_query_string", b""),
            "headers": [(name, value) for name, value in headers.items() if name in kept],
            "subprotocols": [],
            "client": [peer.host, peer.port] if hasattr(peer, "port") else None,
        }
        if hasattr(self, "_raw_query_string"):
            del self._raw_query_string
        self._deliver(CONNECTED, scope)

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
        self._lose()

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
            if size >= 126:  # an extended length follows: 16 or 64 bits, the shortest that fits
                layout, least = ("!H", 126) if size == 126 else ("!Q", 2**16)
                width = struct.calcsize(layout)
                if end - start < width:
                    break
                (size,) = struct.unpack_from(layout, data, start)
                start += width
                if size < least or size >= 2**63:
                    raise ProtocolError(PROTOCOL_ERROR, "length not minimally encoded or too large")
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
            self._deliver(RECEIVED, None)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(INVALID_DATA, "text message not valid UTF-8") from None
        self._deliver(RECEIVED, text)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self._write(frame(PONG, payload))
        elif opcode == CLOSE:
            if len(payload) == 1:
                raise ProtocolError(PROTOCOL_ERROR, "close frame of one byte")
            if payload:
                if struct.unpack_from("!H", payload)[0] not in VALID_CLOSE_CODES:
                    raise ProtocolError(PROTOCOL_ERROR, "invalid close code")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(INVALID_DATA, "close reason not valid UTF-8") from None
            # The close handshake: its code echoed, then the server closes the TCP connection.
            self._close(frame(CLOSE, payload[:2]))

    def _fail(self, code: int, reason: str) -> None:
        logger.info("websocket closed, %d: %s", code, reason)
        self._close(close_frame(code))

    def _close(self, closing: bytes) -> None:
        self.state = CLOSED
        self.buffer, self.message = b"", None
        self._flush()
        self.transport.write(closing)
        self._lose()
        self._deliver(DISCONNECTED)

    def _lose(self) -> None:
        """End the connection once what is written is out, or after ``CLOSE_SECONDS``."""
        self.transport.loseConnection()
        asyncio.get_running_loop().call_later(CLOSE_SECONDS, self.transport.abortConnection)

    def drop(self) -> bool:
        """Drop the connection at once, without a close frame (a client then reconnects, maybe to
        another server); whether it was still open."""
        if self.state == CLOSED:
            return False
        self.state = CLOSED
        self.buffer, self.message = b"", None
        self.transport.abortConnection()
        if self.handler is not None:
            self._deliver(DISCONNECTED)
        return True

    # --- frames to the client ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Queue a frame: the frames of one turn of the loop go out together, at its end (a room's
        event reaches every socket in the same turn)."""
        if self.outgoing is None:
            self.outgoing = [data]
            _turn.add(self)
        else:
            self.outgoing.append(data)

    def _flush(self) -> None:
        """Write the queued frames: straight to the socket while the transport holds nothing back (it
        would register the socket for writing, wait for a turn of the loop, write and unregister it:
        most of a small frame's cost); what the socket does not take now, and every frame of a
        transport without a plain socket (TLS), goes through the transport's buffer."""
        outgoing, self.outgoing = self.outgoing, None
        if not outgoing:
            return
        data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if (
            sock is not None
            and len(data) <= DIRECT_LIMIT
            and transport.connected
            and not transport.disconnecting
            and not transport.dataBuffer
            and not getattr(transport, "_tempDataBuffer", True)
        ):
            try:
                data = data[sock.send(data) :]
            except BlockingIOError:
                pass
            except OSError:
                pass  # the transport finds the error on its own when it reads or writes
        if data:
            transport.write(data)

    # --- the handler ------------------------------------------------------------------------------------
    def _deliver(self, event: int, value: Any = None) -> None:
        """Queue an event for the handler; a task runs the queue while it is not empty."""
        if self.inbox is None:
            self.inbox = []
        self.inbox.append((event, value))
        if self.task is None:
            self._start()
        elif len(self.inbox) >= INBOX_LIMIT and not self.paused and self.state != CLOSED:
            self.paused = True  # the client sends faster than the handler takes its messages
            if not self.blocked:
                self.transport.pauseProducing()

    def _start(self) -> None:
        """Run the queued events now, in this turn of the loop, up to the handler's first wait: only
        what waits goes on in a task (events arriving meanwhile queue behind, in order)."""
        self.task = True
        if (task := eager.start(self._run())) is not None:  # else done: ``_run`` cleared the task
            self.task = task

    async def _run(self) -> None:
        handler = self.handler
        assert handler is not None
        while self.inbox:
            event, value = self.inbox.pop(0)
            if self.paused and len(self.inbox) < INBOX_LIMIT // 2:
                self.paused = False
                if not self.blocked:
                    self.transport.resumeProducing()
            try:
                if event == CONNECTED:
                    await handler.connect(value, self._send)
                elif event == RECEIVED:
                    await handler.receive(value)
                else:
                    await handler.disconnect()
            except Exception:
                logger.exception("websocket handler failed")
                self._failed()
            if event == DISCONNECTED:
                self.handler = self.inbox = self.task = None
                self._forget()
                return
        self.inbox = self.task = None

    def _failed(self) -> None:
        """The handler raised: the connection ends (its handler hears ``disconnect``)."""
        if self.state == CONNECTING:
            self._refuse(b"500 Internal Server Error", "Internal server error")
            self._deliver(DISCONNECTED)
        elif self.state == OPEN:
            self._close(close_frame(INTERNAL_ERROR))

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
                self._deliver(DISCONNECTED)
            else:
                raise ValueError(f"{kind} before websocket.accept")
        elif self.state == OPEN:
            if kind == "websocket.send":
                if (text := message.get("text")) is not None:
                    self._write(frame(TEXT, text.encode()))
                elif (data := message.get("bytes")) is not None:
                    self._write(frame(BINARY, data))
            elif kind == "websocket.close":
                self._close(close_frame(message.get("code") or NORMAL, message.get("reason") or ""))
