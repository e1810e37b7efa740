"""A lean HTTP/1.1 server side for ``vantage6.serve``, calling the ASGI application directly.

daphne serves HTTP through Twisted's ``HTTPChannel`` and ``Request`` (header objects, a temporary file
per body), its own request class (a queue and checks per message) and periodic sweeps of every request;
this protocol takes their place. It reads one request at a time: the request line and headers (bounded:
``MAX_HEAD_BYTES``, ``MAX_HEADERS``: 431; strict, anything malformed is answered 400, 501 or 505 and
the connection closed), a ``Content-Length`` or chunked body (over its limit, ``vantage6.limits``: 413
at once, the rest read and thrown away), keep-alive as HTTP/1.0 and 1.1 say, ``Expect: 100-continue``
and HEAD. Pipelined requests wait in the buffer until the one before is answered, and while the client
leaves the answers unread (the transport's buffer is full) reading stops. The application starts once
the head is in and takes the body as it arrives (reading pauses while it has a ``FEED_CHUNK`` unread);
a streamed response is written as the transport takes it.

Answers the application marks as replayable (a ``"vantage6.replay"`` function in its
``http.response.start``: the view declared its answer constant, see ``vantage6.api.middleware``) are kept
per request head, byte for byte, and written again with a fresh ``Date`` for a later request with the
same head, without calling the application: only heads of small requests with a Host and without
credentials, body or forwarding headers (``REPLAYABLE_FIELDS``) qualify, whose answer then depends on
nothing else.

A request asking for a websocket (``Upgrade: websocket``) hands the connection to ``vantage6.websocket``
with the request's bytes, as daphne does. Slow clients: a request head must be complete within
``HEAD_SECONDS`` of its first byte and a body must bring ``MIN_BODY_PROGRESS`` bytes (or its end)
every ``BODY_SECONDS``: a trickle is a stall (408, closed); a connection idle for ``KEEPALIVE_SECONDS``
is closed.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from twisted.internet import tcp
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from vantage6 import limits, throttle
from vantage6.logging import PATH_TEXT_LIMIT, client_text

logger = logging.getLogger("vantage6.http")

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
HEAD_SECONDS = 10
BODY_SECONDS = 30
MIN_BODY_PROGRESS = 4096  # bytes of a body (or all of it) per BODY_SECONDS
# Answers the client leaves unread this long (the transport's buffer full, or a closing connection's last
# answer) end the connection at once: TCP would keep it, and its buffer, for as long as the client lives.
WRITE_SECONDS = 60
# Longer than a proxy keeps an idle upstream connection (scripts/proxy: 2 s; nginx's default: 60 s), so
# that the proxy closes it first and never sends a request on a connection being closed.
KEEPALIVE_SECONDS = 75
FEED_CHUNK = 256 * 1024  # unread body bytes above which reading pauses
SWEEP_SECONDS = 1.0
REFUSAL_LOG_SECONDS = 60.0  # connections refused over the cap are logged at most this often

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(rb"/[\x21-\x7e]*")
VERSION = re.compile(rb"HTTP/\d\.\d")
BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# A chunk's size (at most 15 hex digits: no overflow), then optional extensions; no control character
# (a bare CR or LF, a NUL) anywhere, which a proxy in front could read as the end of the line.
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER = range(6)  # what the connection reads
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SOCKET_PATH = b"/socket.io/"
# The header fields a request whose answer may be replayed can have: none carries credentials, a body or
# what a proxy says of the client. Their values are part of the head the answer is kept under.
REPLAYABLE_FIELDS = frozenset(
    {
        b"host",
        b"user-agent",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"connection",
        b"keep-alive",
        b"cache-control",
        b"pragma",
        b"content-type",
        b"origin",
        b"referer",
        b"dnt",
        b"priority",
        b"upgrade-insecure-requests",
        b"sec-fetch-dest",
        b"sec-fetch-mode",
        b"sec-fetch-site",
        b"sec-fetch-user",
        b"sec-ch-ua",
        b"sec-ch-ua-mobile",
        b"sec-ch-ua-platform",
        b"access-control-request-method",
        b"access-control-request-headers",
    }
)
MAX_REPLAY_HEAD = 2048  # bytes of a request head whose answer is kept
MAX_REPLAY_BODY = 16 * 1024  # bytes of a kept answer's body
MAX_REPLAYS = 256  # kept answers per server; when full, they are dropped and kept anew

Application = Callable[[dict, Any, Any], Any]


class BadRequest(Exception):
    """The request cannot be served: answered ``status``, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_date = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header's value, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date[1]


class Refusals:
    """Connections closed at once for being over a cap: counted, and logged at most once a minute (a flood
    must not flood the log too)."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self.count = 0
        self.logged = 0.0

    def note(self, what: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged >= REFUSAL_LOG_SECONDS:
            self.logged = now
            logger.warning(
                "%s, the most allowed (%s): new ones are closed (%d so far)", what, self.setting, self.count
            )


class Factory:
    """Builds the HTTP connections of one server; ``draining`` once it stops (each answer then closes
    its connection). With ``max_connections`` open (HTTP and websockets), a new one is closed at once;
    so is one of a client address with ``max_per_client`` open (default: ``max_connections``).

    The client address is the peer's, or, for a request from one of ``trusted_proxies``, the one its
    ``X-Forwarded-For`` says (as the login throttle reads it): a connection of a trusted proxy counts for
    the client of its latest request, which is answered 429 if that client has ``max_per_client`` open.
    """

    def __init__(
        self,
        application: Application,
        ws_factory: Any,
        max_connections: int,
        *,
        max_per_client: int | None = None,
        trusted_proxies: Iterable[throttle.IPNetwork] = (),
    ) -> None:
        self.application = application
        self.ws_factory = ws_factory  # builds the protocol an upgraded connection is handed to
        self.max_connections = max_connections
        self.max_per_client = max_per_client or max_connections
        self.trusted_proxies = tuple(trusted_proxies)
        self.refused = Refusals("V6_MAX_CONNECTIONS")
        self.refused_per_client = Refusals("V6_MAX_CONNECTIONS_PER_CLIENT")
        self.clients: Counter[str] = Counter()  # open connections (HTTP and websockets) per client address
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Future] = set()  # the application's, until they end
        self.draining = False
        self.sweeping = False
        # Replayable answers by request head: the answer up to its Date value, the rest, whether the
        # connection stays open, and the application's function to call with the seconds of a replay.
        self.answers: dict[bytes, tuple[bytes, bytes, bool, Callable[[float], None]]] = {}

    def keep(self, head: bytes, answer: tuple[bytes, bytes, bool, Callable[[float], None]]) -> None:
        if len(self.answers) >= MAX_REPLAYS:
            self.answers.clear()  # bounded whatever the variety of heads clients send
        self.answers[head] = answer

    def buildProtocol(self, address: object) -> Connection | None:
        if len(self.connections) + len(self.ws_factory.sockets) >= self.max_connections:
            self.refused.note(f"{self.max_connections} connections open")
            return None  # Twisted closes the accepted socket
        peer = getattr(address, "host", None)  # None: not over IP (a Unix socket), not counted
        meta = {"REMOTE_ADDR": peer or ""}
        proxied = peer is not None and throttle.from_trusted_proxy(meta, self.trusted_proxies)
        # A trusted proxy's connection counts once a request names its client.
        client = throttle.client_address(meta, ()) if peer and not proxied else None
        if client is not None and not self.admit(client):
            return None
        if not self.sweeping:
            self.sweeping = True
            asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)
        return Connection(self, client, proxied=proxied)

    def admit(self, client: str) -> bool:
        """Count a connection of ``client``, unless it has ``max_per_client`` open already."""
        if self.clients[client] >= self.max_per_client:
            self.refused_per_client.note(f"client {client} has {self.max_per_client} connections open")
            return False
        self.clients[client] += 1
        return True

    def release(self, client: str) -> None:
        """A connection of ``client`` ended."""
        self.clients[client] -= 1
        if self.clients[client] <= 0:
            del self.clients[client]

    def gauges(self) -> list[str]:
        """The metrics of the connections of this process."""
        return [
            "# HELP vantage6_connections_open open HTTP and websocket connections of this process",
            "# TYPE vantage6_connections_open gauge",
            f"vantage6_connections_open {len(self.connections) + len(self.ws_factory.sockets)}",
            "# HELP vantage6_connections_refused_total connections closed at once for V6_MAX_CONNECTIONS",
            "# TYPE vantage6_connections_refused_total counter",
            f"vantage6_connections_refused_total {self.refused.count}",
            "# HELP vantage6_connections_refused_per_client_total connections closed at once for "
            "V6_MAX_CONNECTIONS_PER_CLIENT",
            "# TYPE vantage6_connections_refused_per_client_total counter",
            f"vantage6_connections_refused_per_client_total {self.refused_per_client.count}",
        ]

    def _sweep(self) -> None:
        """Close the connections whose client is too slow (or idle too long)."""
        now = time.monotonic()
        for connection in [c for c in self.connections if c.deadline and c.deadline < now]:
            connection.timed_out()
        for connection in [c for c in self.connections if c.write_paused is not None and c.stalled_by < now]:
            connection.drop("does not read its answers")
        asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def drop_long_polls(self, spare: Callable[[bytes], bool] = lambda _target: False) -> int:
        """Drop the connections of Socket.IO long-polling requests (they only wait for packets), but those
        whose request target ``spare`` names (answered soon); how many."""
        waiting = [
            c
            for c in self.connections
            if c.exchange is not None and c.exchange.waits_for_packets() and not spare(c.exchange.target)
        ]
        for connection in waiting:
            connection.abort()
        return len(waiting)

    def close_idle(self) -> int:
        """Close the connections kept alive after an answer on which no request has begun since, but
        those of trusted proxies (when stopping: ``vantage6.serve`` says why); how many."""
        return len([c for c in list(self.connections) if not c.proxied and c.close_if_idle()])

    def busy(self) -> int:
        """Requests arriving or being answered, and application calls not ended yet."""
        return len([c for c in self.connections if c.busy()]) + len(self.tasks)


class Connection:
    """One HTTP connection: a Twisted protocol (and the producer its transport pauses when its write
    buffer is full)."""

    def __init__(self, factory: Factory, counted: str | None = None, *, proxied: bool = False) -> None:
        self.factory = factory
        self.counted = counted  # the client address the connection counts for (factory.clients)
        self.proxied = proxied  # the peer is a trusted proxy: each request says which client it is for
        self.transport: Any = None
        self.buffer = bytearray()
        self.reading = HEAD
        self.exchange: Exchange | None = None  # the request being answered
        self.left = 0  # body bytes (or chunk bytes) still to come
        self.deadline = 0.0  # when the client is too slow (0: none)
        self.progress = 0  # body bytes since the deadline was set
        self.paused = False  # reading, while a request is in progress
        self.held = False  # the next request, until the client reads the answers written so far
        self.write_paused: asyncio.Future | None = None  # set while the transport's buffer is full
        self.stalled_by = 0.0  # when the client, not reading, has it dropped
        self.closing = False  # the connection ends once its answer is out
        self.kept = False  # kept alive after an answer
        self.client: list | None = None
        self.server: list | None = None
        self.socket: Any = None  # a plain TCP connection's, written to directly while nothing waits

    # --- Twisted's protocol and producer interfaces ----------------------------------------------------
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        peer, host = transport.getPeer(), transport.getHost()
        self.client = [peer.host, peer.port] if hasattr(peer, "port") else None
        self.server = [host.host, host.port] if hasattr(host, "port") else None
        if hasattr(host, "port"):
            # Each answer and socket event goes out at once: Nagle's algorithm held a small write back
            # until the client acknowledged the one before, which it may delay by 40 ms.
            transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        if isinstance(transport, tcp.Connection) and not transport.TLS:
            self.socket = transport.socket
        self.factory.connections.add(self)
        self.deadline = time.monotonic() + KEEPALIVE_SECONDS

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._read()
        except BadRequest as exc:
            self._refuse(exc.status, str(exc))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connections.discard(self)
        self._uncount()
        self.deadline = 0.0
        self.buffer = bytearray()
        self.held = False
        if self.exchange is not None:
            self.exchange.gone()
        self.resumeProducing()

    def pauseProducing(self) -> None:
        if self.write_paused is None:
            self.write_paused = asyncio.get_running_loop().create_future()
            self.stalled_by = time.monotonic() + WRITE_SECONDS

    def resumeProducing(self) -> None:
        if self.write_paused is not None:
            if not self.write_paused.done():
                self.write_paused.set_result(None)
            self.write_paused = None
        if self.held:
            self.held = False
            self._next()

    def stopProducing(self) -> None:
        self.resumeProducing()

    # --- requests -------------------------------------------------------------------------------------
    def peer(self) -> str:
        return str(self.client[0]) if self.client else "?"

    def busy(self) -> bool:
        return self.exchange is not None or (self.reading == HEAD and bool(self.buffer))

    def close_if_idle(self) -> bool:
        """Close the connection if it was kept alive after an answer and no request has begun on it
        since; whether it was."""
        if not self.kept or self.closing or self.busy() or self.reading != HEAD or self._arriving():
            return False
        self._close()
        return True

    def _arriving(self) -> bool:
        """Bytes are in the socket, not read yet (a request that came as the connection was idle)."""
        if self.socket is None:
            return False
        try:
            return bool(self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing there, or the connection failed: the transport finds out
            return False

    def _read(self) -> None:
        while self.buffer:
            if self.reading == HEAD:
                if self.exchange is not None or self.held:  # a pipelined request: after the answer
                    self._pause_if(len(self.buffer) > MAX_HEAD_BYTES)
                    return
                if not self._head():
                    return
            elif self.reading == BODY:
                if self._take_body():
                    self._body_end()
            else:
                if not self._chunked():
                    return

    def _head(self) -> bool:
        """Start the request whose head is in the buffer; False until one is complete."""
        while self.buffer[:2] == b"\r\n":  # empty lines before a request are allowed (RFC 9112 2.2)
            del self.buffer[:2]
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BadRequest(431, "Request header fields too large")
            if self.buffer and self.deadline and self.deadline > time.monotonic() + HEAD_SECONDS:
                self.deadline = time.monotonic() + HEAD_SECONDS  # the first byte of a head
            return False
        if end > MAX_HEAD_BYTES:
            raise BadRequest(431, "Request header fields too large")
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        answer = self.factory.answers.get(head)
        if answer is not None and not self.factory.draining:
            return self._replay(answer)
        method, target, version, headers = parse_head(head)
        if self.proxied and not self._count_for(headers):
            raise BadRequest(429, "Too many connections from this client address")
        fields = dict(headers)
        if fields.get(b"upgrade", b"").lower() == b"websocket":
            self._upgrade(head, target)
            return False
        exchange = Exchange(self, method, target, version, fields)
        # Without a Host the application would read the address the connection came to instead.
        if end <= MAX_REPLAY_HEAD and b"host" in fields and fields.keys() <= REPLAYABLE_FIELDS:
            exchange.key = head
        self.exchange = exchange
        self._start(exchange, headers, fields)
        return True

    def _count_for(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Count a trusted proxy's connection for the client its request is for (instead of the one of its
        request before); False if that client has as many connections as it may."""
        forwarded = b",".join(value for name, value in headers if name == b"x-forwarded-for")
        meta = {"REMOTE_ADDR": self.peer(), "HTTP_X_FORWARDED_FOR": forwarded.decode("latin-1")}
        client = throttle.client_address(meta, self.factory.trusted_proxies)
        if client == self.counted:
            return True
        self._uncount()
        if not self.factory.admit(client):
            return False
        self.counted = client
        return True

    def _uncount(self) -> None:
        if self.counted is not None:
            self.factory.release(self.counted)
            self.counted = None

    def _start(
        self, exchange: Exchange, headers: list[tuple[bytes, bytes]], fields: dict[bytes, bytes]
    ) -> None:
        """Read the body as the headers say (refuse it if over its limit) and call the application."""
        length = fields.get(b"content-length")
        if b"transfer-encoding" in fields:
            if length is not None or exchange.version == b"HTTP/1.0":
                raise BadRequest(400, "Transfer-Encoding with Content-Length or in HTTP/1.0")
            if fields[b"transfer-encoding"].lower() != b"chunked":
                raise BadRequest(501, "Only the chunked transfer coding is supported")
            self.reading = CHUNK_SIZE
        elif length is not None:
            if not length.isdigit() or len(length) > 18:
                raise BadRequest(400, "Invalid Content-Length")
            self.left = int(length)
            if self.left:
                self.reading = BODY
        if self.reading == HEAD:  # no body
            exchange.complete = True
            self.deadline = 0.0
        else:
            self._body_deadline()
        exchange.limit = limits.body_limit(
            exchange.method, exchange.target, _listed(fields.get(b"authorization"))
        )
        expects = fields.get(b"expect", b"").lower() == b"100-continue" and exchange.version == b"HTTP/1.1"
        if self.left > exchange.limit:
            exchange.refuse_body()
            if expects:
                self._close()  # the client waits for "100 Continue": none will come
            return
        if expects and not exchange.complete and not self.buffer:
            self.transport.write(CONTINUE)
        exchange.run(headers)

    def _replay(self, answer: tuple[bytes, bytes, bool, Callable[[float], None]]) -> bool:
        """Answer a request (whose head was read) with a kept answer, as the application answered it;
        False if the connection ends with it."""
        started = time.perf_counter()
        before_date, after_date, keep_alive, replayed = answer
        self.write(before_date + http_date() + after_date)
        if keep_alive:
            self.kept = True
            self.deadline = time.monotonic() + KEEPALIVE_SECONDS
            if self.write_paused is not None:  # as in ``answered``: the next request waits for the client
                self.held = True
                self._pause_if(True)
        else:
            self._close()
        replayed(time.perf_counter() - started)
        return keep_alive

    def write(self, data: bytes) -> None:
        """``transport.write``, but what the socket takes at once is sent at once when nothing of the
        connection waits to be sent: Twisted's transport would send it a turn of the loop later, after
        asking the loop to watch the socket for writing and before asking it to stop (~13 µs of CPU, half
        of a replayed answer's)."""
        transport = self.transport
        if (
            self.socket is not None
            and not (transport.dataBuffer or transport._tempDataBuffer)
            and transport.connected
            and not (transport.disconnecting or transport._writeDisconnected)
        ):
            try:
                sent = self.socket.send(data)
            except OSError:  # full (sent later), or failing: the transport finds out and closes
                sent = 0
            data = data[sent:]
        if data:
            transport.write(data)

    def _body_deadline(self) -> None:
        self.deadline = time.monotonic() + BODY_SECONDS
        self.progress = 0

    def _body(self, data: bytes) -> None:
        exchange = self.exchange
        self.progress += len(data)
        if self.progress >= MIN_BODY_PROGRESS:
            self._body_deadline()
        if exchange is None or exchange.refused:
            return
        exchange.received += len(data)
        if exchange.received > exchange.limit:
            exchange.refuse_body()
            return
        exchange.chunks.append(data)
        exchange.unread += len(data)
        exchange.wake()
        self._pause_if(exchange.unread > FEED_CHUNK)

    def _body_end(self) -> None:
        self.reading = HEAD
        exchange = self.exchange
        if exchange is None:
            return
        self.deadline = 0.0
        if exchange.refused:
            # The refused body has been read to its end: the answer is out, the connection ends.
            self._close()
            return
        exchange.complete = True
        exchange.wake()

    def _take_body(self) -> bool:
        """Pass on what the buffer holds of the ``left`` body (or chunk) bytes; True once none are left."""
        take = min(self.left, len(self.buffer))
        self._body(bytes(self.buffer[:take]))
        del self.buffer[:take]
        self.left -= take
        return not self.left

    def _chunked(self) -> bool:
        """Decode what the buffer holds of a chunked body; False when more bytes are needed."""
        if self.reading == CHUNK_DATA:
            if self._take_body():
                self.reading = CHUNK_END
            return True
        end = self.buffer.find(b"\r\n")
        if end < 0:
            if len(self.buffer) > MAX_CHUNK_LINE:
                raise BadRequest(400, "Invalid chunked body")
            return False
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        if self.reading == CHUNK_END:
            if line:
                raise BadRequest(400, "Invalid chunked body")
            self.reading = CHUNK_SIZE
        elif self.reading == CHUNK_SIZE:
            if not (match := CHUNK_LINE.fullmatch(line)):
                raise BadRequest(400, "Invalid chunk size")
            self.left = int(match[1], 16)
            self.reading = CHUNK_DATA if self.left else TRAILER
            exchange = self.exchange
            if (
                exchange is not None
                and not exchange.refused
                and exchange.received + self.left > exchange.limit
            ):
                exchange.refuse_body()  # a chunk over the limit is refused as it is announced
        elif not line:  # the empty line after the trailer fields
            self._body_end()
        elif len(line) > MAX_CHUNK_LINE:
            raise BadRequest(400, "Invalid chunked body")
        else:
            parse_field(line)  # a trailer field: ignored, but it must be one
        return True

    def _pause_if(self, full: bool) -> None:
        if full and not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def taken(self) -> None:
        """The application took the body bytes read so far: read on."""
        if self.paused and not self.held:
            self.paused = False
            self.transport.resumeProducing()
            if self.reading != HEAD:
                self._body_deadline()  # the time reading stood still is not the client's

    def answered(self, exchange: Exchange, keep_alive: bool) -> None:
        """The answer to ``exchange`` is out: the next request, or the end of the connection."""
        if exchange is not self.exchange:
            return
        self.exchange = None
        if not keep_alive or self.reading != HEAD:
            # Closed (or a body the application did not wait for: the connection ends after the answer).
            self._close()
            return
        self.kept = True
        self.deadline = time.monotonic() + KEEPALIVE_SECONDS
        if self.write_paused is not None:
            # The client does not read its answers (the transport's buffer is full): its next request
            # waits until it does, and reading stops meanwhile, so that answers cannot pile up.
            self.held = True
            self._pause_if(True)
            return
        self._next()

    def _next(self) -> None:
        """Read on: the next request, if it is in the buffer already."""
        self.taken()
        if self.buffer:
            self.dataReceived(b"")

    def timed_out(self) -> None:
        self.deadline = 0.0
        if self.closing:
            self.drop("does not take its last answer")
            return
        if self.exchange is None and self.reading == HEAD and not self.buffer:
            self._close()  # idle
            return
        logger.info("request from %s too slow: closed", self.peer())
        self._refuse(408, "Request timeout")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless an answer started) and close the connection."""
        exchange = self.exchange
        if exchange is not None:
            exchange.gone()
        if exchange is None or not (exchange.written or exchange.refused):
            self.transport.write(error_response(status, message))
        if status not in (408, 429):  # a timeout is no fault; 429s are logged by Refusals, not each
            logger.info("bad request from %s: %s", self.peer(), message)
        self.buffer = bytearray()
        self.reading = HEAD
        self._close()

    def _close(self) -> None:
        """End the connection once what is written is out (within ``WRITE_SECONDS``)."""
        self.closing = True
        self.deadline = time.monotonic() + WRITE_SECONDS
        self.transport.loseConnection()

    def drop(self, why: str) -> None:
        logger.info("client %s %s: dropped", self.peer(), why)
        self.abort()

    def abort(self) -> None:
        """End the connection at once; what was not sent yet (or is written later) is dropped."""
        self.socket = None
        self.transport.abortConnection()

    def _upgrade(self, head: bytes, target: bytes) -> None:
        """Hand the connection to a websocket protocol, with the request's bytes."""
        rest, self.buffer = bytes(self.buffer), bytearray()
        self.factory.connections.discard(self)
        self.deadline = 0.0
        protocol = self.factory.ws_factory.buildProtocol(self.transport.getPeer())
        protocol._raw_query_string = target.partition(b"?")[2]
        if self.counted is not None:  # the websocket counts for the client now, until it ends
            protocol.release = functools.partial(self.factory.release, self.counted)
            self.counted = None
        transport, self.transport = self.transport, None
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(head + b"\r\n\r\n" + rest)


class Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of the application's call."""

    __slots__ = (
        "chunked",
        "chunks",
        "complete",
        "connection",
        "delivered",
        "disconnected",
        "head_only",
        "keep_alive",
        "key",
        "limit",
        "method",
        "received",
        "refused",
        "replay",
        "started",
        "target",
        "unread",
        "version",
        "waiter",
        "written",
    )

    def __init__(
        self, connection: Connection, method: bytes, target: bytes, version: bytes, fields: dict[bytes, bytes]
    ) -> None:
        self.connection = connection
        self.method = method
        self.target = target
        self.version = version
        tokens = {t.strip() for t in fields.get(b"connection", b"").lower().split(b",")}
        self.keep_alive = b"close" not in tokens if version == b"HTTP/1.1" else b"keep-alive" in tokens
        self.head_only = method == b"HEAD"
        self.chunks: list[bytes] = []  # body bytes the application has not taken yet
        self.unread = 0  # their size
        self.received = 0
        self.limit = 0
        self.complete = False  # the whole body is read
        self.delivered = False  # and given to the application
        self.disconnected = False  # the client is gone, or the answer is out
        self.refused = False
        self.key: bytes | None = None  # the request head, if its answer may be kept for replays
        self.replay: Callable[[float], None] | None = None  # the application's, for a replayable answer
        self.started: tuple[int, Any] | None = None  # the response's status and headers
        self.written = False  # its head
        self.chunked = False  # its body goes in chunks
        self.waiter: asyncio.Future | None = None

    def waits_for_packets(self) -> bool:
        """A Socket.IO long-polling GET, which ends only when a packet comes or the connection closes."""
        return self.method == b"GET" and self.target.startswith(SOCKET_PATH) and not self.written

    def run(self, headers: list[tuple[bytes, bytes]]) -> None:
        path, _, query = self.target.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": self.version[5:].decode(),
            "method": self.method.decode(),
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "root_path": "",
            "scheme": "http",
            "query_string": query,
            # As daphne: a name with "_" could pass for one with "-" once Django makes it a META key.
            "headers": [(name, value) for name, value in headers if b"_" not in name],
            "client": self.connection.client,
            "server": self.connection.server,
        }
        factory = self.connection.factory
        task = asyncio.ensure_future(factory.application(scope, self.receive, self.send))
        factory.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future) -> None:
        self.connection.factory.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("Exception inside application: %s", error, exc_info=error)
        if self.disconnected:
            return
        # The application ended without a complete answer: a 500 if none of it is out, the end of the
        # connection in any case.
        self.disconnected = True
        self.keep_alive = False
        transport = self.connection.transport
        if not self.written:
            transport.write(error_response(500, "Internal server error"))
        self.connection.answered(self, keep_alive=False)

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def gone(self) -> None:
        """The client is gone, or gets no answer from the application."""
        self.disconnected = True
        self.wake()

    def refuse_body(self) -> None:
        """The body is over its limit: 413 at once; the application (if it started) sees a disconnect."""
        connection = self.connection
        self.refused = True
        self.gone()
        self.chunks = []
        body = json.dumps({"msg": limits.too_large_message(self.limit)}).encode()
        connection.transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        logger.info(
            "%s %s 413 body over %d bytes from %s",
            client_text(self.method.decode("latin-1")),
            client_text(self.target.partition(b"?")[0].decode("latin-1"), PATH_TEXT_LIMIT),
            self.limit,
            connection.peer(),
        )

    # --- ASGI -----------------------------------------------------------------------------------------
    async def receive(self) -> dict:
        while not self.disconnected:
            if self.chunks or (self.complete and not self.delivered):
                body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks, self.unread = [], 0
                self.delivered = self.complete
                self.connection.taken()
                return {"type": "http.request", "body": body, "more_body": not self.complete}
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if self.disconnected:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.started is not None:
                raise ValueError("HTTP response has already been started")
            self.started = (message["status"], message.get("headers", ()))
            self.replay = message.get("vantage6.replay")
            return
        if kind != "http.response.body":
            raise ValueError(f"Cannot handle message type {kind}")
        if self.started is None:
            raise ValueError("HTTP response has not yet been started")
        body, more = message.get("body", b""), message.get("more_body", False)
        out = b""
        if not self.written:
            fields, dated, rest = self._head(body, more)
            out = fields + (b"" if dated else b"Date: %s\r\n" % http_date()) + rest
            self.written = True
            if self.replay is not None and self.key is not None and not (more or dated):
                self._keep(fields, rest, body)
        if self.head_only:
            pass
        elif self.chunked:
            if body:
                out += b"%x\r\n%s\r\n" % (len(body), body)
            if not more:
                out += b"0\r\n\r\n"
        else:
            out += body
        connection = self.connection
        if out:
            connection.write(out)
        if not more:
            self.gone()
            connection.answered(self, self.keep_alive)
        elif connection.write_paused is not None:
            await connection.write_paused  # the client reads slower than the application writes

    def _keep(self, fields: bytes, rest: bytes, body: bytes) -> None:
        """Keep a whole answer the application marked replayable, split at the value of its Date."""
        assert self.started is not None and self.key is not None and self.replay is not None
        if not 200 <= self.started[0] < 300 or len(body) > MAX_REPLAY_BODY:
            return
        after_date = b"\r\n" + rest + (b"" if self.head_only else body)
        self.connection.factory.keep(self.key, (fields + b"Date: ", after_date, self.keep_alive, self.replay))

    def _head(self, body: bytes, more: bool) -> tuple[bytes, bool, bytes]:
        """The response head, for a first body part ``body`` (``more`` to come), in two parts: the status
        line and the application's fields, then (after a Date line, unless the application gave one:
        the second value) the fields of this protocol and the empty line."""
        assert self.started is not None
        status, headers = self.started
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
        length = dated = False
        for name, value in headers:
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                raise ValueError(f"Header {name!r}: {value!r} is not of bytes")
            if BAD_VALUE.search(value) or not TOKEN.fullmatch(name):
                raise ValueError(f"Invalid header {name!r}")
            lower = name.lower()
            if lower in (b"connection", b"transfer-encoding"):
                continue  # the framing is this protocol's
            length = length or lower == b"content-length"
            dated = dated or lower == b"date"
            lines.append(b"%s: %s\r\n" % (name, value))
        fields, lines = b"".join(lines), []
        if status < 200 or status in (204, 304):
            self.head_only = True  # an answer without a body
        elif not length:
            if not more:
                lines.append(b"Content-Length: %d\r\n" % len(body))
            elif self.version == b"HTTP/1.1":
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # the end of the connection ends the body
        if self.connection.factory.draining:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif self.version == b"HTTP/1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return fields, dated, b"".join(lines)


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """The method, target, version and headers (lower-case names) of a request head; BadRequest if it
    is not one."""
    request_line, *lines = head.split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not TARGET.fullmatch(parts[1]):
        raise BadRequest(400, "Malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if VERSION.fullmatch(version):
            raise BadRequest(505, "HTTP version not supported")
        raise BadRequest(400, "Malformed request line")
    if len(lines) > MAX_HEADERS:
        raise BadRequest(431, "Too many header fields")
    headers = []
    seen: set[bytes] = set()
    for line in lines:
        name, value = parse_field(line)
        if name in seen and name in (b"content-length", b"transfer-encoding", b"host"):
            raise BadRequest(400, f"Repeated {name.decode()} header")
        seen.add(name)
        headers.append((name, value))
    if version == b"HTTP/1.1" and b"host" not in seen:
        raise BadRequest(400, "Missing Host header")  # RFC 9112, 3.2
    return method, target, version, headers


def parse_field(line: bytes) -> tuple[bytes, bytes]:
    """The name (lower case) and value of a header or trailer field line; BadRequest if it is not one."""
    name, colon, value = line.partition(b":")
    if not colon or not TOKEN.fullmatch(name):
        raise BadRequest(400, "Malformed header field")
    value = value.strip(b" \t")
    if BAD_VALUE.search(value):
        raise BadRequest(400, "Invalid header value")
    return name.lower(), value


def error_response(status: int, message: str) -> bytes:
    """A whole JSON error answer, after which the connection closes."""
    body = json.dumps({"msg": message}).encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        REASONS.get(status, b"Error"),
        len(body),
    )
    return head + b"Connection: close\r\n\r\n" + body


def _listed(value: bytes | None) -> list[bytes] | None:
    return None if value is None else [value]
