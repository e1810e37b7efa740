"""A Socket.IO v5 server over Engine.IO v4 whose sessions and rooms span server instances.

Delivery model:

* A room is a channel-layer group (``room_group``); websocket consumers of the room's sessions are its
  members, so an emit from any instance reaches them wherever they are connected.
* A long-polling session has no consumer between two GETs, and its GETs may land on any instance.
  Its packets are queued in the session store and a wake-up naming it is sent to every process
  (``PROCESSES``, one group all processes listen on): the one holding a waiting GET of the session
  (if any) passes it on. A GET thus costs no group binding of its own.
* Session state (namespaces, rooms, owner) lives in the store, so any instance can serve any request.
  Only clients that authenticate at the handshake get a session there; the others stay in memory
  (see ``local``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer
from django.db import DatabaseError

from vantage6.socketio import bridge
from vantage6.socketio import packets as p
from vantage6.socketio.local import LocalSessions, Sessions
from vantage6.socketio.store import POLLING, WEBSOCKET, Session, SessionStore

logger = logging.getLogger(__name__)

_ROOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
WAKE = {"type": "eio.wake"}
PROCESSES = "eio.processes"


def room_group(namespace: str, room: str) -> str:
    return f"sio{namespace.replace('/', '.')}.{room}"


def session_group(sid: str) -> str:
    return f"eio.{sid}"


def new_id() -> str:
    return secrets.token_urlsafe(15)


class Sink(Protocol):
    """The websocket consumer holding a session in this process."""

    @property
    def session(self) -> Session: ...

    async def send_packets(self, packets: list[str]) -> None: ...

    async def group_add(self, group: str) -> None: ...

    async def group_discard(self, group: str) -> None: ...

    async def close(self) -> None: ...


class Socket:
    """One client connected to one namespace; what namespace handlers work with."""

    def __init__(self, server: Server, session: Session, namespace: str, sink: Sink | None) -> None:
        self.server = server
        self.session = session
        self.namespace = namespace
        self.sink = sink

    @property
    def sid(self) -> str:
        return self.session.namespaces[self.namespace]["sid"]

    @property
    def state(self) -> dict:
        """Application data kept with the session (stored after connect and disconnect)."""
        return self.session.namespaces[self.namespace]["state"]

    @property
    def auth(self) -> dict:
        """What the server's ``authenticate`` kept of the handshake."""
        return self.session.auth

    def set_owner(self, owner: str) -> None:
        self.session.owner = owner

    async def emit(self, event: str, data: object = None) -> None:
        await self.server.send(self.session, [p.event_packet(self.namespace, event, data)], self.sink)

    async def join(self, room: str) -> None:
        if not _ROOM_NAME.match(room):
            raise ValueError(f"invalid room name {room!r}")
        await database_sync_to_async(self.server.store.join)(self.session.sid, self.namespace, room)
        if self.sink is not None:
            await self.sink.group_add(room_group(self.namespace, room))

    async def leave(self, room: str) -> None:
        await database_sync_to_async(self.server.store.leave)(self.session.sid, self.namespace, room)
        if self.sink is not None:
            await self.sink.group_discard(room_group(self.namespace, room))


class Namespace:
    """Handlers of one namespace. Subclass and override."""

    async def on_connect(self, socket: Socket) -> None:
        """After the CONNECT ack was sent (connections are always accepted)."""

    async def on_disconnect(self, socket: Socket) -> None:
        """The client left or its session ended; its rooms are left afterwards."""

    async def on_event(self, socket: Socket, event: str, args: list) -> object:
        """A client event; a non-None result (or a list of results) is the acknowledgement's data."""
        return None


Authenticate = Callable[[dict[str, str]], tuple[dict, bool]]
"""From the handshake's headers (lower-case names): what the session keeps of them (no secret: it is
stored) and whether the client is authenticated. Runs in a thread: it may use the database."""

Verify = Callable[[list[Session]], dict[str, str]]
"""From sessions with an owner: by sid, the event that revokes those whose client is no longer who
its handshake said (see ``Server.revoke``). Runs in a thread, once per sweep for all the sessions
of a process: it may use the database."""


def _anonymous(_headers: dict[str, str]) -> tuple[dict, bool]:
    return {}, False


class Server:
    """The namespaces, the session store and the timers; one per process, shared by both transports.

    ``secret`` signs the sids of unauthenticated sessions: instances serving one deployment share it.
    """

    def __init__(
        self,
        *,
        namespaces: dict[str, Namespace],
        store: SessionStore,
        ping_interval: float = 25,
        ping_timeout: float = 60,
        max_payload: int = 1_000_000,
        authenticate: Authenticate = _anonymous,
        verify: Verify | None = None,
        secret: bytes | None = None,
        anonymous_capacity: int = 1000,
        cors_allowed_origins: tuple[str, ...] = ("*",),
        layer_alias: str = DEFAULT_CHANNEL_LAYER,
        housekeeping: Callable[[], Awaitable[None]] | None = None,
        housekeeping_interval: float = 5,
        publish_timeout: float = 1,
        layer_reconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.namespaces = namespaces
        # Unauthenticated sessions end pingInterval + pingTimeout after their handshake.
        local = LocalSessions(
            secret=secret or secrets.token_bytes(32),
            capacity=anonymous_capacity,
            lifetime=ping_interval + ping_timeout,
            max_queued=16_384,
        )
        self.store = Sessions(store, local)
        self.authenticate = authenticate
        self.verify = verify
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        self.cors_allowed_origins = cors_allowed_origins
        self.layer_alias = layer_alias
        self.housekeeping = housekeeping
        # ``housekeeping`` (the application's periodic work) runs every ``housekeeping_interval`` s.
        self.housekeeping_interval = housekeeping_interval
        # How long ``publish`` (synchronous code: a REST request) waits for the channel layer.
        self.publish_timeout = publish_timeout
        # Runs when the channel layer got its broker back: what was published meanwhile may be lost.
        self.layer_reconnected = layer_reconnected
        # Sessions whose websocket is held by a consumer of this process, and that consumer.
        self.local_websockets: dict[str, Sink] = {}
        # The channel of the long-polling GET waiting in this process, by sid; ``listening`` is set
        # once wake-ups reach them.
        self.waiting_polls: dict[str, str] = {}
        self.listening = asyncio.Event()
        # Set when this process stops gracefully: its clients reconnect to another one at once, so the
        # disconnects that follow are no departures.
        self.stopping = False
        self._process = ""
        self._beaten = False
        self._housekeeping_loop: asyncio.AbstractEventLoop | None = None

    @property
    def process(self) -> str:
        """This process's id among the server processes (made on first use, so that processes
        forked from one parent differ)."""
        if not self._process:
            self._process = secrets.token_hex(12)
        return self._process

    @property
    def layer(self) -> BaseChannelLayer:
        return bridge.layer(self.layer_alias)

    # --- sessions ------------------------------------------------------------------------------------
    def open_session(self, transport: str, headers: dict[str, str]) -> tuple[Session, str]:
        """A new session and its Engine.IO OPEN packet."""
        auth, authenticated = self.authenticate(headers)
        if authenticated:
            process = self.process if transport == WEBSOCKET else ""
            session = Session(new_id(), transport, auth, ping_sent_at=time.time(), process=process)
            self.store.create(session)
        else:
            session = self.store.local.open(transport, auth)
        handshake = {
            "sid": session.sid,
            "upgrades": ["websocket"] if transport == POLLING else [],
            "pingInterval": int(self.ping_interval * 1000),
            "pingTimeout": int(self.ping_timeout * 1000),
            "maxPayload": self.max_payload,
        }
        return session, p.encode_eio(p.OPEN, json.dumps(handshake, separators=(",", ":")))

    async def disconnect(
        self, session: Session, sink: Sink | None = None, idle_before: float | None = None
    ) -> None:
        """End a session: its namespaces' disconnect handlers run once, on the instance that claims it."""
        if not await database_sync_to_async(self.store.claim)(session.sid, idle_before=idle_before):
            return
        for namespace in list(session.namespaces):
            await self._leave_namespace(session, namespace, sink)

    async def _leave_namespace(self, session: Session, namespace: str, sink: Sink | None) -> None:
        await self._disconnected(Socket(self, session, namespace, sink))
        del session.namespaces[namespace]

    async def _disconnected(self, socket: Socket) -> None:
        """The namespace's disconnect handler runs; the socket leaves the rooms it is still in."""
        try:
            await self.namespaces[socket.namespace].on_disconnect(socket)
        except Exception:
            logger.exception("disconnect handler of %s failed", socket.namespace)
        for ns, room in await database_sync_to_async(self.store.rooms)(socket.session.sid):
            if ns == socket.namespace:
                await socket.leave(room)

    async def revoke(self, session: Session, event: str, sink: Sink | None = None) -> None:
        """The client of ``session`` is no longer who its handshake said (its login ended, say).

        ``event`` is emitted to it in each namespace, whose disconnect handler then runs, and it leaves
        its rooms: it stays connected, with no state, owner or room (clients told ``event`` go and
        identify again). Done once, wherever the session is served: a websocket held by another
        process gets the work over the channel layer.
        """
        if sink is None and session.transport == WEBSOCKET:
            message = {"type": "sio.revoke", "event": event}
            await self.layer.group_send(session_group(session.sid), message)
            return
        release = database_sync_to_async(self.store.release)
        if not session.owner or not await release(session.sid, session.owner):
            return
        for namespace, entry in session.namespaces.items():
            socket = Socket(self, session, namespace, sink)
            await socket.emit(event)
            await self._disconnected(socket)
            entry["state"] = {}
        session.owner = ""
        await database_sync_to_async(self.store.save)(session)

    # --- Socket.IO packets from clients -------------------------------------------------------------------
    async def receive(self, session: Session, data: str, sink: Sink | None = None) -> None:
        """Handle the data of an Engine.IO MESSAGE packet from the client."""
        try:
            packet = p.decode_sio(data)
        except p.PacketError as exc:
            logger.info("session %s: ignored packet: %s", session.sid, exc)
            return
        if packet.type == p.CONNECT:
            await self._connect(session, packet.namespace, sink)
        elif packet.namespace not in session.namespaces:
            return
        elif packet.type == p.DISCONNECT:
            await self._leave_namespace(session, packet.namespace, sink)
            if not session.namespaces:
                session.owner = ""
            await database_sync_to_async(self.store.save)(session)
        elif packet.type == p.EVENT:
            await self._event(session, packet, sink)

    async def _connect(self, session: Session, namespace: str, sink: Sink | None) -> None:
        handler = self.namespaces.get(namespace)
        if handler is None:
            error = p.SioPacket(p.CONNECT_ERROR, namespace, {"message": "Invalid namespace"})
            await self.send(session, [error.encode()], sink)
            return
        if namespace not in session.namespaces:
            session.namespaces[namespace] = {"sid": new_id(), "state": {}}
            await database_sync_to_async(self.store.save)(session)
        socket = Socket(self, session, namespace, sink)
        await self.send(session, [p.SioPacket(p.CONNECT, namespace, {"sid": socket.sid}).encode()], sink)
        try:
            await handler.on_connect(socket)
        except Exception:
            logger.exception("connect handler of %s failed", namespace)
        await database_sync_to_async(self.store.save)(session)

    async def _event(self, session: Session, packet: p.SioPacket, sink: Sink | None) -> None:
        socket = Socket(self, session, packet.namespace, sink)
        event, args = cast(list, packet.data)[0], cast(list, packet.data)[1:]  # decode_sio checked it
        try:
            result = await self.namespaces[packet.namespace].on_event(socket, event, args)
        except Exception:
            logger.exception("handler of event %s failed", event)
            result = None
        if packet.ack_id is not None:
            data = list(result) if isinstance(result, list | tuple) else [] if result is None else [result]
            ack = p.SioPacket(p.ACK, packet.namespace, data, packet.ack_id)
            await self.send(session, [ack.encode()], sink)

    # --- delivery ------------------------------------------------------------------------------------------
    async def send(self, session: Session, packets: list[str], sink: Sink | None = None) -> None:
        """Send Engine.IO packets to one session, wherever it is connected."""
        if sink is not None:
            await sink.send_packets(packets)
        elif session.transport == WEBSOCKET:
            await self.layer.group_send(
                session_group(session.sid), {"type": "eio.packets", "packets": packets}
            )
        else:
            await database_sync_to_async(self.store.push)(session.sid, packets)
            await self._wake([session.sid])

    async def emit(self, event: str, data: object = None, *, room: str, namespace: str = "/") -> None:
        """Send an event to every socket of a room on every instance."""
        packet = p.event_packet(namespace, event, data)
        polling = await database_sync_to_async(self.store.push_to_room)(namespace, room, packet)
        await self._fan_out(namespace, room, packet, polling)

    def publish(self, event: str, data: object = None, *, room: str, namespace: str = "/") -> None:
        """``emit`` for synchronous code; in an event loop's thread it is scheduled instead."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            _keep(loop.create_task(self.emit(event, data, room=room, namespace=namespace)))
            return
        packet = p.event_packet(namespace, event, data)
        polling = self.store.push_to_room(namespace, room, packet)
        try:
            bridge.run(
                lambda: self._fan_out(namespace, room, packet, polling),
                self.layer_alias,
                timeout=self.publish_timeout,
            )
        except TimeoutError:
            # The broker is away: the event goes out once it is back, and ``layer_reconnected`` runs.
            logger.warning("event %s to room %s not published within %s s", event, room, self.publish_timeout)

    def run_sync(
        self, call: Callable[[], Awaitable[object]], *, timeout: float = bridge.TIMEOUT_SECONDS
    ) -> object:
        """Run the coroutine ``call()`` (e.g. ``sweep``) from synchronous code; TimeoutError after
        ``timeout`` seconds (pass ``publish_timeout`` within a request)."""
        return bridge.run(call, self.layer_alias, timeout=timeout)

    async def _fan_out(self, namespace: str, room: str, packet: str, polling: list[str]) -> None:
        layer = self.layer
        await layer.group_send(room_group(namespace, room), {"type": "eio.packets", "packets": [packet]})
        if polling:
            await self._wake(polling)

    async def _wake(self, sids: list[str]) -> None:
        """Tell the GETs waiting for ``sids``, in whichever process, that packets were queued."""
        await self.layer.group_send(PROCESSES, {"type": "eio.wake", "sids": sids})

    async def _pass_wake_ups(self) -> None:
        """This process's end of ``PROCESSES``: wake-ups go on to the GETs waiting here."""
        layer = self.layer
        channel = await layer.new_channel()
        await layer.group_add(PROCESSES, channel)
        self.listening.set()
        while True:
            try:
                message = await layer.receive(channel)
                for sid in message.get("sids", ()):
                    if (waiting := self.waiting_polls.get(sid)) is not None:
                        await layer.send(waiting, WAKE)
            except StopConsumer:
                return  # the layer was closed: the process is stopping
            except Exception:
                # A GET not woken still returns at its ping; the next wake-ups must get through.
                logger.exception("passing on a wake-up failed")
                await asyncio.sleep(1)

    # --- housekeeping ----------------------------------------------------------------------------------
    def ensure_housekeeping(self) -> None:
        """Start the periodic sweep on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._housekeeping_loop is not loop:
            self._housekeeping_loop = loop
            self.listening = asyncio.Event()
            _keep(loop.create_task(self._housekeeping_forever()))
            _keep(loop.create_task(self._pass_wake_ups()))
            if self.layer_reconnected is not None:
                _keep(loop.create_task(self._watch_broker()))

    async def _watch_broker(self) -> None:
        """Run ``layer_reconnected`` each time the layer's broker connection comes back (a layer without
        a broker, such as the in-memory one, has nothing to watch)."""
        layer = self.layer
        if not hasattr(layer, "carehare_connection"):
            return
        previous = None
        while True:
            try:
                connection = await layer.carehare_connection  # waits while the broker is away
            except StopConsumer:
                return  # the layer was closed: the process is stopping
            if connection is previous:  # the layer has not noticed the loss yet
                await asyncio.sleep(0.1)
                continue
            if previous is not None and self.layer_reconnected is not None:
                logger.warning("channel layer reconnected to its broker")
                try:
                    await self.layer_reconnected()
                except Exception:
                    logger.exception("work after the channel layer reconnected failed")
            previous = connection
            with contextlib.suppress(Exception):  # closed by the broker or by a network error
                await connection.closed

    async def _housekeeping_forever(self) -> None:
        swept = time.monotonic() - self.ping_interval  # the first beat at once
        while True:
            try:
                if time.monotonic() - swept >= self.ping_interval:
                    swept = time.monotonic()
                    await self.beat()
                    await self.sweep()
                if self.housekeeping is not None:
                    await self.housekeeping()
            except DatabaseError as exc:
                # An outage is answered 503 elsewhere; a traceback on every tick would bury the log.
                logger.warning("socket housekeeping skipped, database unavailable: %s", exc)
            except Exception:
                logger.exception("socket housekeeping failed")
            await asyncio.sleep(min(self.housekeeping_interval, self.ping_interval))

    async def beat(self) -> None:
        """Record that this process is alive: one write whatever the number of its sessions. If
        another process took it for dead meanwhile (it stalled), its sessions were ended there: its
        websockets are dropped, and their clients connect again afresh."""
        known = await database_sync_to_async(self.store.beat)(self.process)
        if not known and self._beaten:
            logger.warning(
                "this process was taken for dead; dropping its %d websockets", len(self.local_websockets)
            )
            for sink in list(self.local_websockets.values()):
                await sink.close()
        self._beaten = True

    async def sweep(self) -> None:
        """Revoke the sessions ``verify`` finds (this process's websockets, and the long-polling ones,
        which no process holds); end sessions nobody serves any more (a long-polling client gone
        silent, or the websockets of a process that died)."""
        if self.verify is not None:
            await self._verify()
        before = time.time() - (2 * self.ping_interval + self.ping_timeout)
        for process in await database_sync_to_async(self.store.silent_processes)(before):
            for sid in await database_sync_to_async(self.store.bury)(process, before):
                await self._end(sid)
        for sid in await database_sync_to_async(self.store.idle)(before):
            await self._end(sid, idle_before=before)
        # Websockets of this process whose ending failed (the database was away, say).
        for sid in await database_sync_to_async(self.store.held)(self.process, before):
            await self._end(sid)

    async def _end(self, sid: str, idle_before: float | None = None) -> None:
        session = await database_sync_to_async(self.store.get)(sid)
        if session is not None and sid not in self.local_websockets:
            await self.disconnect(session, idle_before=idle_before)

    async def _verify(self) -> None:
        held = {sid: sink for sid, sink in self.local_websockets.items() if sink.session.owner}
        polling = await database_sync_to_async(lambda: self.store.owned(transport=POLLING))()
        sessions = {session.sid: session for session in polling} | {
            sid: sink.session for sid, sink in held.items()
        }
        if not sessions:
            return
        for sid, event in (await database_sync_to_async(self.verify)(list(sessions.values()))).items():
            await self.revoke(sessions[sid], event, held.get(sid))


_tasks: set[asyncio.Task] = set()


def _keep(task: asyncio.Task) -> None:
    """Hold a reference to a background task until it finishes."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
