"""The two Engine.IO transports as Channels consumers: HTTP long-polling and websocket.

Route both at ``/socket.io/`` with ``Consumer.as_asgi(server=<Server>)``. The server never sends an
Engine.IO CLOSE or a Socket.IO DISCONNECT: clients reconnect by themselves only after a plain drop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from vantage6.socketio import packets as p
from vantage6.socketio.server import Server, room_group, session_group
from vantage6.socketio.store import POLLING, WEBSOCKET, Session

PROTOCOL_VERSION = "4"
# How long after an upgrade a room packet may still be the copy of one sent from the polling queue.
DOUBLES_WINDOW = 10
TEXT = "text/plain; charset=UTF-8"


def _query(scope: dict) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _db(method):
    return database_sync_to_async(method)


class _NoConnectionCheck:
    """Channels closes stale database connections before every handler, a hop to the database
    thread per message; with a room event fanned out to every socket that hop dominates. The
    handlers here reach the database only through ``database_sync_to_async``, which does it anyway."""

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

    A waiting GET is known to the server by its channel: a wake-up (packets queued by any instance,
    such as the NOOP of an upgrade to websocket on some instance) or its own ping timer ends it.
    """

    def __init__(self, *, server: Server) -> None:
        super().__init__()
        self.server = server
        self.size = 0
        self._session: Session | None = None
        self.waiting = False
        self.timer: asyncio.Task | None = None

    # --- request handling -------------------------------------------------------------------------------
    async def http_request(self, message: dict) -> None:
        # As AsyncHttpConsumer's, except that a long-poll GET stays alive after ``handle``.
        body = message.get("body", b"")
        self.size += len(body)
        if self.size <= self.server.max_payload:
            self.body.append(body)
        if message.get("more_body"):
            return
        if self.size > self.server.max_payload:
            await self._error(413, 4, "Payload too large")
        else:
            await self.handle(b"".join(self.body))
        if not self.waiting:
            raise StopConsumer()

    async def handle(self, body: bytes) -> None:
        self.server.ensure_housekeeping()
        method, query = self.scope["method"], _query(self.scope)
        if method == "OPTIONS":
            await self._respond(200, b"", preflight=True)
            return
        if query.get("EIO") != PROTOCOL_VERSION:
            await self._error(400, 5, "Unsupported protocol version")
            return
        if query.get("transport") != POLLING or "j" in query:
            await self._error(400, 0, "Transport unknown")
            return
        sid = query.get("sid")
        if method not in ("GET", "POST"):
            await self._error(405, 2, "Bad handshake method")
        elif sid is None:
            if method == "GET":
                _, open_packet = await _db(self.server.open_session)(POLLING, _headers(self.scope))
                await self._respond(200, open_packet.encode())
            else:
                await self._error(400, 3, "Bad request")
        else:
            self._session = await _db(self.server.store.get)(sid)
            if self._session is None:
                await self._error(400, 1, "Session ID unknown")
            elif self.session.transport != POLLING:
                await self._error(400, 3, "Bad request")
            elif method == "GET":
                await self._long_poll()
            else:
                await self._receive(body)

    async def _receive(self, body: bytes) -> None:
        await _db(self.server.store.touch)([self.session.sid])
        try:
            packets = p.decode_payload(body.decode())
        except (UnicodeDecodeError, p.PacketError):
            await self._error(400, 3, "Bad request")
            return
        for packet_type, data in packets:
            if packet_type == p.MESSAGE:
                await self.server.receive(self.session, data)
            elif packet_type == p.CLOSE:
                await self.server.disconnect(self.session)
                break
        await self._respond(200, b"ok", content_type="text/html; charset=UTF-8")

    async def _long_poll(self) -> None:
        sid = self.session.sid
        await _db(self.server.store.touch)([sid])
        self.waiting = True
        # Listen before looking at the queue, so that a wake-up in between is not lost.
        await self.server.listening.wait()
        self.server.waiting_polls[sid] = self.channel_name
        if await self._flush():
            return
        due = (self.session.ping_sent_at or 0.0) + self.server.ping_interval - time.time()
        if due <= 0:
            await self._ping()
        else:
            self.timer = asyncio.create_task(self._ping_later(due))

    async def _ping_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.channel_layer.send(self.channel_name, {"type": "eio.ping_due"})

    async def _flush(self) -> bool:
        packets = await _db(self.server.store.pop)(self.session.sid)
        if packets:
            await self._answer(packets)
        return bool(packets)

    async def _ping(self) -> None:
        await _db(self.server.store.touch)([self.session.sid], ping_sent=True)
        await self._answer([p.encode_eio(p.PING)])

    async def _answer(self, packets: list[str]) -> None:
        await self._respond(200, p.encode_payload(packets).encode())
        await self.disconnect()

    # --- messages on the session's group ------------------------------------------------------------------
    async def eio_wake(self, message: dict) -> None:
        if self.waiting and await self._flush():
            raise StopConsumer()

    async def eio_packets(self, message: dict) -> None:
        if self.waiting:
            await self._answer(message["packets"])
            raise StopConsumer()

    async def eio_ping_due(self, message: dict) -> None:
        if self.waiting:
            await self._ping()
            raise StopConsumer()

    async def disconnect(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiting:
            self.waiting = False
            if self.server.waiting_polls.get(self.session.sid) == self.channel_name:
                del self.server.waiting_polls[self.session.sid]

    # --- responses ---------------------------------------------------------------------------------------
    async def _error(self, status: int, code: int, message: str) -> None:
        body = json.dumps({"code": code, "message": message}).encode()
        await self._respond(status, body, content_type="application/json")

    async def _respond(
        self, status: int, body: bytes, *, content_type: str = TEXT, preflight: bool = False
    ) -> None:
        headers = [(b"Content-Type", content_type.encode()), (b"Content-Length", str(len(body)).encode())]
        origin = _headers(self.scope).get("origin")
        allowed = self.server.cors_allowed_origins
        if origin and ("*" in allowed or origin in allowed):
            headers += [
                (b"Access-Control-Allow-Origin", origin.encode()),
                (b"Access-Control-Allow-Credentials", b"true"),
            ]
            if preflight:
                requested = _headers(self.scope).get("access-control-request-headers", "Authorization")
                headers += [
                    (b"Access-Control-Allow-Methods", b"OPTIONS, GET, POST"),
                    (b"Access-Control-Allow-Headers", requested.encode()),
                ]
        await self.send_response(status, body, headers=headers)


class WebsocketConsumer(_NoConnectionCheck, AsyncWebsocketConsumer):
    """``?transport=websocket``: with a sid, the upgrade of a long-polling session (which may have
    been opened on another instance); without, a new websocket-only session."""

    def __init__(self, *, server: Server) -> None:
        super().__init__()
        self.server = server

    async def connect(self) -> None:
        self.server.ensure_housekeeping()
        self._session: Session | None = None
        self.upgraded = False
        self.closed = False
        # Packets of the polling queue sent at the upgrade, whose room copies may still come.
        self.doubles: Counter[str] = Counter()
        self.doubles_until = 0.0
        self.joined: set[str] = set()
        self.pinger: asyncio.Task | None = None
        self.pong = asyncio.Event()
        query = _query(self.scope)
        if query.get("EIO") != PROTOCOL_VERSION or query.get("transport") != WEBSOCKET:
            await self.close()
            return
        sid = query.get("sid")
        if sid is None:
            self._session, open_packet = await _db(self.server.open_session)(WEBSOCKET, _headers(self.scope))
            await self.accept()
            await self.group_add(session_group(self.session.sid))
            await self.send(open_packet)
            await self._start()
            return
        self._session = await _db(self.server.store.get)(sid)
        if self._session is None or self.session.transport != POLLING:
            self._session = None
            await self.close()
            return
        await self.accept()
        await self.group_add(session_group(sid))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return  # binary attachments are not supported
        try:
            packet_type, data = p.decode_eio(text_data)
        except p.PacketError:
            return
        if not self.upgraded:
            if packet_type == p.PING and data == "probe":
                await self.send(p.encode_eio(p.PONG, "probe"))
                # The GET waiting on any instance (or the next one) must return, so the client can switch.
                await self.server.send(self.session, [p.encode_eio(p.NOOP)])
            elif packet_type == p.UPGRADE:
                await self._upgrade()
        elif packet_type == p.MESSAGE:
            await self.server.receive(self.session, data, self)
        elif packet_type == p.PONG:
            self.pong.set()
        elif packet_type == p.PING:
            await self.send(p.encode_eio(p.PONG, data))
        elif packet_type == p.CLOSE:
            await self.close()

    async def _upgrade(self) -> None:
        """Rooms first, then the transport: an event published in between is both queued for polling
        and sent to the rooms, and its second copy is dropped (``eio_packets``); the other order would
        lose it. Room messages arriving meanwhile wait in the layer until this returns."""
        sid = self.session.sid
        # Namespaces may have been connected over polling, on any instance.
        for namespace, room in await _db(self.server.store.rooms)(sid):
            await self.group_add(room_group(namespace, room))
        await _db(self.server.store.set_transport)(sid, WEBSOCKET, self.server.process)
        self._session = await _db(self.server.store.get)(sid)
        if self._session is None:
            await self.close()
            return
        await self._start()
        queued = await self._pop_queued()
        self.doubles = Counter(queued)
        self.doubles_until = time.monotonic() + DOUBLES_WINDOW
        await self.send_packets(queued)

    async def _pop_queued(self) -> list[str]:
        packets = await _db(self.server.store.pop)(self.session.sid)
        # A NOOP left from the upgrade was meant for a long-polling GET.
        return [packet for packet in packets if packet != p.encode_eio(p.NOOP)]

    async def _start(self) -> None:
        self.upgraded = True
        self.server.local_websockets[self.session.sid] = self
        self.pinger = asyncio.create_task(self._ping_forever())

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.server.ping_interval)
            expires_at = self.session.expires_at
            if expires_at is not None and time.time() >= expires_at:
                await self.close()  # an unauthenticated session's time is up
                return
            self.pong.clear()
            await self.send(p.encode_eio(p.PING))
            try:
                await asyncio.wait_for(self.pong.wait(), self.server.ping_timeout)
            except TimeoutError:
                await self.close()
                return

    # --- the Sink of the server ----------------------------------------------------------------------
    async def send_packets(self, packets: list[str]) -> None:
        if not self.closed:
            for packet in packets:
                await self.send(packet)

    async def group_add(self, group: str) -> None:
        self.joined.add(group)
        await self.channel_layer.group_add(group, self.channel_name)

    async def group_discard(self, group: str) -> None:
        self.joined.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    # --- messages on the session's and rooms' groups ------------------------------------------------
    async def eio_packets(self, message: dict) -> None:
        if self.upgraded:
            await self.send_packets([packet for packet in message["packets"] if not self._double(packet)])

    def _double(self, packet: str) -> bool:
        """Whether ``packet`` was sent already from the polling queue of the upgrade."""
        if not self.doubles or time.monotonic() > self.doubles_until:
            return False
        if self.doubles[packet] <= 0:
            return False
        self.doubles[packet] -= 1
        return True

    async def eio_wake(self, message: dict) -> None:
        if self.upgraded:
            await self.send_packets(await self._pop_queued())

    async def sio_revoke(self, message: dict) -> None:
        if self.upgraded:
            await self.server.revoke(self.session, message["event"], self)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.pinger is not None:
            self.pinger.cancel()
        if self._session is not None and self.upgraded:
            self.server.local_websockets.pop(self.session.sid, None)
            await self.server.disconnect(self.session, self)
        for group in list(self.joined):
            await self.group_discard(group)
