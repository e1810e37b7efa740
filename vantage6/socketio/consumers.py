"""The two Engine.IO transports as Channels consumers: HTTP long-polling and websocket.

Route both at ``/socket.io/`` with ``Consumer.as_asgi(server=<Server>)``. The server never sends an
Engine.IO CLOSE or a Socket.IO DISCONNECT: clients reconnect by themselves only after a plain drop.
Neither consumer has a channel of its own: what reaches a session comes through its process's
channel (see ``server``), so an idle socket costs the layer nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from vantage6 import throttle
from vantage6.cors import allow_origin, origin_allowed
from vantage6.socketio import packets as p
from vantage6.socketio.server import (
    TEXT,
    UNKNOWN_SESSION,
    Server,
    Unavailable,
    error,
    keep,
    new_id,
)
from vantage6.socketio.store import POLLING, WEBSOCKET, Session

PROTOCOL_VERSION = "4"
# A channel-layer alias that is not configured: the consumers get no channel.
NO_LAYER = "no channel of its own"
# Those of every other answer of the server (Django's defaults): no answer is sniffed into HTML, nor
# framed.
SECURITY_HEADERS = [(b"X-Content-Type-Options", b"nosniff"), (b"X-Frame-Options", b"DENY")]


def _query(scope: dict) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _address(scope: dict, server: Server) -> str:
    """The client address of a request (the peer's, or the one a trusted proxy names): a session
    answers only requests from the address that opened it."""
    return throttle.scope_client_address(scope, server.trusted_proxies)


class _NoConnectionCheck:
    """Channels closes stale database connections before every handler, a hop to the database
    thread per message; with a room event fanned out to every socket that hop dominates. The
    handlers here reach the database only through ``database_sync_to_async`` or the events' database
    thread (``vantage6.socketio.database``), which do it anyway."""

    channel_layer_alias = NO_LAYER
    _session: Session | None

    @property
    def session(self) -> Session:
        """The session of the request or websocket (set once it is known)."""
        assert self._session is not None, "no session yet"
        return self._session

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class PollingConsumer(_NoConnectionCheck, AsyncHttpConsumer):
    """``GET`` without sid: handshake; ``GET`` with sid: long-poll; ``POST``: packets from the client.

    A request of a session of another process goes to that process and its answer comes back through
    this process's channel; a GET that waits is answered later, by whatever delivers to its session.
    """

    def __init__(self, *, server: Server) -> None:
        super().__init__()
        self.server = server
        self.size = 0
        self._session: Session | None = None
        self.key = ""  # of the waiting GET or forwarded request
        self.answered = False
        self.owner = ""  # the process a forwarded request went to
        self.timer: asyncio.TimerHandle | None = None
        self.released = False  # a forwarded GET whose owner was asked to answer it at once

    # --- request handling -------------------------------------------------------------------------------
    async def http_request(self, message: dict) -> None:
        # As AsyncHttpConsumer's, except that a waiting request stays alive after ``handle``.
        body = message.get("body", b"")
        self.size += len(body)
        if self.size <= self.server.max_payload:
            self.body.append(body)
        if message.get("more_body"):
            return
        if self.size > self.server.max_payload:
            await self.reply(*error(413, 4, "Payload too large"))
        else:
            await self.handle(b"".join(self.body))
        if self.answered:
            raise StopConsumer()

    async def handle(self, body: bytes) -> None:
        self.server.ensure_housekeeping()
        method, query = self.scope["method"], _query(self.scope)
        if method == "OPTIONS":
            await self._respond(200, b"", TEXT, preflight=True)
            return
        if query.get("EIO") != PROTOCOL_VERSION:
            await self.reply(*error(400, 5, "Unsupported protocol version"))
            return
        if query.get("transport") != POLLING or "j" in query:
            await self.reply(*error(400, 0, "Transport unknown"))
            return
        sid, address = query.get("sid"), _address(self.scope, self.server)
        if method not in ("GET", "POST"):
            await self.reply(*error(405, 2, "Bad handshake method"))
        elif sid is None:
            if method == "GET":
                try:
                    _, open_packet = await self.server.open_session(
                        POLLING, _headers(self.scope), address=address
                    )
                except Unavailable as exc:
                    await self.reply(*exc.answer)
                    return
                await self.reply(200, open_packet.encode(), TEXT)
            else:
                await self.reply(*error(400, 3, "Bad request"))
        else:
            await self.server.listening()
            self.key = new_id()
            session = self.server.sessions.get(sid)
            if session is None:
                await self._forward(sid, method, body, address)
            elif session.address != address:
                await self.reply(*UNKNOWN_SESSION)  # as for a sid no process has: it reveals nothing
            else:
                self._session = session
                await self.server.serve_polling(session, method, body, self.reply, self.key)

    async def _forward(self, sid: str, method: str, body: bytes, address: str) -> None:
        """To the process that owns the session; a silent owner (it died) makes the session unknown."""
        server = self.server
        if server.stopping and method == "GET":
            # Its stop drops the long polls it holds (``vantage6.serve``): the packets the owner handed one
            # just then would be lost. Answered at once, the client polls again, through a live process.
            await self.reply(200, p.encode_eio(p.NOOP).encode(), TEXT)
            return
        owner = server.forward_target(sid)
        if owner is None:
            await self.reply(*UNKNOWN_SESSION)
            return
        self.owner = owner
        message = {"type": "eio.forward", "sid": sid, "method": method, "body": body, "address": address}
        self.key = await server.ask(owner, message, self._answer)
        self.timer = asyncio.get_running_loop().call_later(server.forward_timeout, self._owner_silent)
        if method == "GET":
            # Answered by its owner if this process stops meanwhile, not dropped (``Server.stop``).
            server.forwarded_polls[self.key] = (sid, self._release)

    async def _release(self) -> None:
        """This process stops: the owner answers the GET now, with what waits for it (or a NOOP), within
        the forward bound."""
        self.released = True
        self._wait_for_owner(self.server.forward_timeout)
        query = _query(self.scope)
        await self.server.layer.send(self.owner, {"type": "eio.release", "sid": query["sid"], "id": self.key})

    def _wait_for_owner(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._owner_silent)

    async def _answer(self, message: dict) -> None:
        if message["type"] == "eio.held":  # a GET the owner holds: it answers within its ping interval
            if not self.released:
                self._wait_for_owner(self.server.ping_interval + self.server.forward_timeout)
            return
        if self.timer is not None:
            self.timer.cancel()
        self.server.pending.pop(self.key, None)
        await self.reply(message["status"], message["body"], message["content_type"])

    def _owner_silent(self) -> None:
        self.server.pending.pop(self.key, None)
        keep(asyncio.get_running_loop().create_task(self.reply(*UNKNOWN_SESSION)))

    async def reply(self, status: int, body: bytes, content_type: str) -> None:
        if not self.answered:
            self.answered = True
            self.server.forwarded_polls.pop(self.key, None)
            await self._respond(status, body, content_type)

    async def disconnect(self) -> None:
        if self.answered:
            return
        self.answered = True  # the client went away
        self.server.forwarded_polls.pop(self.key, None)
        if self.timer is not None:
            self.timer.cancel()
        if self._session is not None:
            self.server.stop_waiting(self.session, self.key)
        elif self.server.pending.pop(self.key, None) is not None:
            query = _query(self.scope)
            await self.server.layer.send(
                self.owner, {"type": "eio.cancel", "sid": query["sid"], "id": self.key}
            )

    # --- responses ---------------------------------------------------------------------------------------
    async def _respond(self, status: int, body: bytes, content_type: str, *, preflight: bool = False) -> None:
        headers = [
            (b"Content-Type", content_type.encode()),
            (b"Content-Length", str(len(body)).encode()),
            *SECURITY_HEADERS,
        ]
        origin, allowed = _headers(self.scope).get("origin"), self.server.cors_allowed_origins
        headers += [(name.encode(), value.encode()) for name, value in allow_origin(origin, allowed)]
        if preflight and origin and origin_allowed(origin, allowed):
            requested = _headers(self.scope).get("access-control-request-headers", "Authorization")
            headers += [
                (b"Access-Control-Allow-Methods", b"OPTIONS, GET, POST"),
                (b"Access-Control-Allow-Headers", requested.encode()),
            ]
        await self.send_response(status, body, headers=headers)


class WebsocketConsumer:
    """``?transport=websocket``: with a sid, the upgrade of a long-polling session (taken over from the
    process that owns it if need be); without, a new websocket-only session.

    A plain ASGI application rather than a Channels consumer: an idle websocket is then one coroutine
    waiting for its next message, with no dispatch task, channel or per-socket timer of its own. The
    server's own websocket protocol (``vantage6.websocket``) calls ``connect``, ``receive`` and
    ``disconnect`` directly, without even that coroutine.
    """

    __slots__ = ("_send", "_session", "closed", "server", "upgraded")

    def __init__(self, *, server: Server) -> None:
        self.server = server
        self._session: Session | None = None
        self.upgraded = False
        self.closed = False

    @classmethod
    def as_asgi(cls, **initkwargs: object) -> Callable[..., Coroutine[object, object, None]]:
        def app(scope: dict, receive, send) -> Coroutine[object, object, None]:
            # The coroutine itself, not one awaiting it: one frame less held by every websocket.
            return cls(**initkwargs)(scope, receive, send)  # type: ignore[arg-type]

        app._asgi_single_callable = True  # type: ignore[attr-defined]  # an ASGI 3 application
        return app

    async def __call__(self, scope: dict, receive, send) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                await self.receive(message.get("text"))
            elif kind == "websocket.connect":
                await self.connect(scope, send)
            elif kind == "websocket.disconnect":
                await self.disconnect()
                return

    @property
    def session(self) -> Session:
        assert self._session is not None, "no session yet"
        return self._session

    async def connect(self, scope: dict, send: Callable[[dict], Awaitable[None]]) -> None:
        """The upgrade request (its ASGI ``scope``, not kept); ``send`` takes ASGI websocket messages."""
        self._send = send
        self.server.ensure_housekeeping()
        query = _query(scope)
        if query.get("EIO") != PROTOCOL_VERSION or query.get("transport") != WEBSOCKET:
            await self.close()
            return
        sid, address = query.get("sid"), _address(scope, self.server)
        if sid is None:
            try:
                self._session, open_packet = await self.server.open_session(
                    WEBSOCKET, _headers(scope), self, address=address
                )
            except Unavailable:
                await self.close()  # refused before it was accepted: an HTTP 403 to the upgrade
                return
            self.upgraded = True
            await self._send({"type": "websocket.accept"})
            await self.send(open_packet)
            return
        self._session = await self.server.take_over(sid, address)
        if self._session is None or self.session.transport != POLLING:
            self._session = None
            await self.close()
            return
        await self._send({"type": "websocket.accept"})

    async def receive(self, text_data: str | None) -> None:
        if text_data is None:
            return  # binary attachments are not supported
        try:
            packet_type, data = p.decode_eio(text_data)
        except p.PacketError:
            return
        if not self.upgraded:
            if packet_type == p.PING and data == "probe":
                await self.send(p.encode_eio(p.PONG, "probe"))
                await self.server.probed(self.session)
            elif packet_type == p.UPGRADE:
                self.upgraded = True
                await self.server.upgraded(self.session, self)
        elif packet_type == p.MESSAGE:
            await self.server.receive(self.session, data)
        elif packet_type == p.PONG:
            self.server.ponged(self.session)
        elif packet_type == p.PING:
            await self.send(p.encode_eio(p.PONG, data))
        elif packet_type == p.CLOSE:
            await self.close()

    async def send(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    # --- the Sink of the server ----------------------------------------------------------------------
    async def send_packets(self, packets: list[str]) -> None:
        if not self.closed:
            for packet in packets:
                await self.send(packet)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close"})

    async def disconnect(self) -> None:
        self.closed = True
        if self._session is not None and self.upgraded:
            await self.server.disconnect(self.session)
