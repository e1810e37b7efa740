"""A Socket.IO v5 server over Engine.IO v4 whose sessions live in the process that owns them.

Ownership and routing:

* A session lives in the memory of the process that answered its handshake: namespaces, rooms,
  outbox, owner, what its handshake authenticated. Its sid names that process: the process's channel
  on the channel layer, signed with the server secret (``owner_of``), so a sid cannot point anywhere
  else.
* A long-polling GET or POST that lands on another process is forwarded to the owner's channel and
  answered on the forwarding process's channel (``eio.forward`` / ``eio.reply``); the owner holds a
  forwarded GET as a local one. An owner that does not answer within ``forward_timeout`` (it died)
  gets the client "Session ID unknown", on which it starts over; so does one that said it ended after
  a graceful stop (``eio.gone``), at once.
* A websocket upgrade that lands on another process takes the session over (``eio.takeover``): the
  owner hands its state over, forgets it and forwards the session's late polling requests. An owner
  that ended after a graceful stop is not asked: the upgrade is refused at once.
* A session answers only the client address that opened it (``Session.address``): a request or
  upgrade of its sid from another address is answered as an unknown sid. Forwarded requests and
  takeovers name the address, and the owner checks it.
* A room is a channel-layer group. A process is bound once per room any of its sessions is in
  (``room_members`` counts them), and passes each room packet on to those sessions in memory: one
  frame per socket. An event emitted in the process's own loop reaches its sessions at once, and the
  room packets of one turn of the loop go out together at its end, without waiting for the broker.
* On a broker, a process in a room is also bound to the room's key of each other process it knows
  (``from_process``), to which that process publishes the packets of its own loop: the broker
  routes them to the others in the room, never back to the publisher. The processes learn of each
  other over ``PROCESSES`` (``eio.hello`` when one starts or gets its broker back, answered with
  ``eio.peer``; ``eio.bye`` when one stops or was found dead), and a process publishes to the room's
  own group (skipping its copy when it comes back) until ``settle_time`` after its hello, while the
  others bind its keys. Synchronous code (a REST request) publishes to the room's group.
* The processes of one ``vantage6.serve`` (siblings, of one ``family``) pass each other the room packets
  of their loops over their own links (``vantage6.socketio.siblings``), not through the broker: they do
  not learn of each other over ``PROCESSES`` and skip each other's packets that the broker carries. A
  settled process that knows no other publishes no room packet to the broker.
* A change of rights has every process recheck the sessions it touches (``sio.recheck`` on
  ``PROCESSES``); each process named by the asker (those whose last beat is within ``beat_lapse``: one
  silent longer is dead or stuck) confirms once done (``sio.rechecked``), and the asker waits for them,
  at most ``publish_timeout``, but not for one that said it ended after a graceful stop (``eio.gone``).
  A process listens from its first request on a broker, as it beats from then on. A process that went
  ``beat_lapse`` without a beat may have been skipped: before any further room packet reaches its
  sockets or they send an event, it beats and checks all of them again (``_caught_up``).
* The database keeps no session: only the liveness row of each process (``Liveness``), and what the
  application keeps of its connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Protocol, cast

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer, InMemoryChannelLayer
from django.db import DatabaseError

from vantage6 import database_outage as outage
from vantage6 import throttle
from vantage6.logging import client_text, database_error_text
from vantage6.socketio import bridge
from vantage6.socketio import packets as p
from vantage6.socketio.database import sweeps
from vantage6.socketio.siblings import Siblings
from vantage6.socketio.store import POLLING, WEBSOCKET, Liveness, Session

logger = logging.getLogger(__name__)

_ROOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
# Bindings asked of the broker at once when a process learns of another (one per room).
_BINDINGS_AT_ONCE = 100
# A namespace CONNECT records a connection, reads the rights and tells every user socket of the rooms
# joined: it takes as many packets of a client's allowance as that many namespace connects fill the burst
# (a client connects once per session).
CONNECTS_AT_ONCE = 10
# The group every server process listens on (for work on all the sessions of some owners).
PROCESSES = "eio.processes"
SIGNED = "."  # between a sid's body and its signature
_NONCE_BYTES = 9
_MAC_BYTES = 16
TEXT = "text/plain; charset=UTF-8"
HTML = "text/html; charset=UTF-8"
JSON = "application/json"

Reply = Callable[[int, bytes, str], Awaitable[None]]
"""Answers a long-polling request: status, body, content type."""


def room_group(namespace: str, room: str) -> str:
    return f"sio{namespace.replace('/', '.')}.{room}"


def from_process(group: str, process: str) -> str:
    """The key of ``group``'s packets published by ``process``: bound by the room's other processes."""
    key = f"{group}.from.{process}"
    if len(key) < BaseChannelLayer.MAX_NAME_LENGTH:
        return key
    return f"sio.from.{process}.{hashlib.sha256(group.encode()).hexdigest()[:32]}"


def new_id() -> str:
    return secrets.token_urlsafe(15)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def error(status: int, code: int, message: str) -> tuple[int, bytes, str]:
    """An Engine.IO error answer."""
    return status, json.dumps({"code": code, "message": message}).encode(), JSON


UNKNOWN_SESSION = error(400, 1, "Session ID unknown")
BAD_REQUEST = error(400, 3, "Bad request")
UNAVAILABLE_TEXT = "The database is unavailable at the moment; try again later."
UNEXPECTED_TEXT = "An unexpected error occurred on the server!"
STOPPING = error(503, 3, "This server is stopping; connect again.")


class Unavailable(Exception):
    """The database could not serve the handshake, or this process stops: the client is refused (with
    ``answer``), and connects again later."""

    def __init__(self, answer: tuple[int, bytes, str]) -> None:
        super().__init__(answer)
        self.answer = answer


def database_failed(what: str, exc: DatabaseError) -> tuple[int, str]:
    """Log ``exc`` and note an outage (``database_outage``); the HTTP status and the text a client refused
    for it is told, as REST answers the same error. One warning line without traceback where the database
    could not serve (an outage, a lock wait, a statement canceled): neither the client's fault nor a bug."""
    if outage.statement_canceled(exc):
        logger.warning("%s, statement canceled: %s", what, database_error_text(exc))
        return 503, outage.canceled_text()
    if outage.unavailable(exc):
        outage.failed(exc)
        logger.warning("%s, database error: %s", what, database_error_text(exc))
        return 503, UNAVAILABLE_TEXT
    where = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s, unexpected database error: %s\n%s", what, database_error_text(exc), where.rstrip())
    return 500, UNEXPECTED_TEXT


class Sink(Protocol):
    """The websocket consumer of a session in this process."""

    async def send_packets(self, packets: list[str]) -> None: ...

    async def close(self) -> None: ...


class _Waiter:
    """A long-polling GET waiting for packets (``key`` tells the forwarded ones apart)."""

    __slots__ = ("key", "reply", "timer")

    def __init__(self, reply: Reply, key: str) -> None:
        self.reply = reply
        self.key = key
        self.timer: asyncio.TimerHandle | None = None


class _Arriving:
    """A session whose state is still coming: its namespace connects under way (from the admission to
    the end of the connect handler) or its takeover from another process; the owners of the rechecks
    that came meanwhile (None: all of them), whether it has arrived (``done``), and whether it was checked
    again once arrived, if it had to be (``settled``)."""

    __slots__ = ("count", "done", "ended", "rechecked", "settled")

    def __init__(self) -> None:
        self.count = 0
        # The session, if it ended meanwhile: its disconnect handlers run once it arrived (``_arrival``).
        self.ended: Session | None = None
        self.rechecked: set[str] | None = set()
        self.done = asyncio.Event()
        self.settled = asyncio.Event()

    def note(self, owners: set[str] | None) -> None:
        if owners is None or self.rechecked is None:
            self.rechecked = None
        else:
            self.rechecked |= owners

    def missed(self, owner: str) -> bool:
        """Whether a recheck that may concern ``owner`` came while the session arrived."""
        return bool(owner) and (self.rechecked is None or owner in self.rechecked)


class _Allowance:
    """A token bucket of the packets one client sends (see ``Server.admits``): full at first."""

    __slots__ = ("allowance", "received_at", "warned_at")

    def __init__(self) -> None:
        self.allowance = math.inf
        self.received_at = 0.0
        self.warned_at = -math.inf  # when it was last logged for sending too many


class Socket:
    """One client connected to one namespace; what namespace handlers work with."""

    __slots__ = ("namespace", "server", "session")

    def __init__(self, server: Server, session: Session, namespace: str) -> None:
        self.server = server
        self.session = session
        self.namespace = namespace

    @property
    def sid(self) -> str:
        return self.session.namespaces[self.namespace]["sid"]

    @property
    def state(self) -> dict:
        """Application data kept with the session (it moves with it to another process)."""
        return self.session.namespaces[self.namespace]["state"]

    @property
    def auth(self) -> dict:
        """What the server's ``authenticate`` kept of the handshake."""
        return self.session.auth

    def set_owner(self, owner: str) -> None:
        self.session.owner = owner

    async def emit(self, event: str, data: object = None) -> None:
        await self.server.send(self.session, [p.event_packet(self.namespace, event, data)])

    async def join(self, room: str) -> None:
        if not _ROOM_NAME.match(room):
            raise ValueError(f"invalid room name {room!r}")
        await self.server.join(self.session, self.namespace, room)

    async def leave(self, room: str) -> None:
        await self.server.leave(self.session, self.namespace, room)


class Namespace:
    """Handlers of one namespace. Subclass and override."""

    async def on_admit(self, socket: Socket) -> None:
        """Before the CONNECT ack: work that needs the database (a ``DatabaseError`` refuses the
        connection with a connect error, after which the client connects again)."""

    async def on_connect(self, socket: Socket) -> None:
        """After the CONNECT ack was sent (connections are always accepted)."""

    async def on_disconnect(self, socket: Socket) -> None:
        """The client left or its session ended; its rooms are left afterwards."""

    async def on_event(self, socket: Socket, event: str, args: list) -> object:
        """A client event; a non-None result (or a list of results) is the acknowledgement's data."""
        return None

    async def on_move(self, socket: Socket) -> None:
        """The session was taken over by this process (its websocket upgrade landed here)."""

    async def on_recheck(self, sockets: list[Socket]) -> None:
        """What the clients of ``sockets`` may do changed (``Server.recheck``); their logins are still
        good: what the sockets hold (their rooms) is derived again."""


Authenticate = Callable[[dict[str, str]], tuple[dict, bool]]
"""From the handshake's headers (lower-case names): what the session keeps of them (no secret) and
whether the client is authenticated. Runs in a thread: it may use the database."""

Verify = Callable[[list[Session]], dict[str, str]]
"""From sessions with an owner: by sid, the event that revokes those whose client is no longer who
its handshake said (see ``Server.revoke``). Runs in a thread, once per heartbeat round for all the
sessions of a process: it may use the database."""


def _anonymous(_headers: dict[str, str]) -> tuple[dict, bool]:
    return {}, False


class Server:
    """The namespaces, the sessions of this process and the timers; one per process, shared by both
    transports. ``secret`` signs the sids: instances serving one deployment share it."""

    def __init__(
        self,
        *,
        namespaces: dict[str, Namespace],
        liveness: Liveness | None = None,
        ping_interval: float = 25,
        ping_timeout: float = 60,
        max_payload: int = 1_000_000,
        authenticate: Authenticate = _anonymous,
        verify: Verify | None = None,
        secret: bytes | None = None,
        anonymous_capacity: int = 1000,
        anonymous_per_address: int = 100,
        client_of: Callable[[dict], object] = lambda _auth: None,
        max_unconnected: int = 20,
        max_connected: Callable[[dict], int] = lambda _auth: 1_000_000,
        max_queued: int = 1_000_000,
        forward_timeout: float = 5,
        cors_allowed_origins: tuple[str, ...] = ("*",),
        layer_alias: str = DEFAULT_CHANNEL_LAYER,
        housekeeping: Callable[[], Awaitable[None]] | None = None,
        housekeeping_interval: float = 5,
        publish_timeout: float = 1,
        layer_reconnected: Callable[[], Awaitable[None]] | None = None,
        database_reconnected: Callable[[], Awaitable[None]] | None = None,
        packet_rate: float = 20,
        packet_burst: int = 200,
        settle_time: float = 0.5,
        trusted_proxies: Iterable[throttle.IPNetwork] = (),
        beat_retry: float = 1,
    ) -> None:
        self.namespaces = namespaces
        self.liveness = liveness
        self.authenticate = authenticate
        self.verify = verify
        self._key = hmac.new(secret or secrets.token_bytes(32), b"engine.io sid", hashlib.sha256).digest()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        # Unauthenticated long-polling sessions: at most this many (a new one ends the oldest); every
        # unauthenticated session ends pingInterval + pingTimeout after its handshake. (A websocket's
        # connection is bounded by the server's connection limits, not here.)
        self.anonymous_capacity = anonymous_capacity
        # And at most ``anonymous_per_address`` of one client address (``Session.address``: the peer's,
        # or the one a trusted proxy names), a new one ending that address's oldest: one client's flood
        # of handshakes ends its own sessions, not the handshakes of others (a node's among them).
        self.anonymous_per_address = anonymous_per_address
        self._anonymous_of: dict[object, OrderedDict[str, None]] = {}
        # Authenticated sessions of one client (``client_of`` their auth) that have not connected a
        # namespace yet: at most ``max_unconnected``, so that a loop of handshakes ends its own oldest.
        self.client_of = client_of
        self.max_unconnected = max_unconnected
        self._unconnected: dict[object, OrderedDict[str, None]] = {}
        # And those that connected a namespace: at most ``max_connected`` of their auth in this process, the
        # newest winning (a client that reconnects is not locked out while its old session is still known).
        self.max_connected = max_connected
        self._connected_sids: dict[object, OrderedDict[str, None]] = {}
        # A long-polling client that lets more characters than this wait loses its session.
        self.max_queued = max_queued
        # How long a process waits for the owner of a session to answer a forwarded request.
        self.forward_timeout = forward_timeout
        self.cors_allowed_origins = cors_allowed_origins
        # The proxies whose X-Forwarded-For names the client address a session is bound to.
        self.trusted_proxies = tuple(trusted_proxies)
        self.layer_alias = layer_alias
        self.housekeeping = housekeeping
        # ``housekeeping`` (the application's periodic work) runs every ``housekeeping_interval`` s.
        self.housekeeping_interval = housekeeping_interval
        # How long synchronous code (a REST request) waits for channel-layer work it needs done
        # (``run_sync``; ``publish`` does not wait).
        self.publish_timeout = publish_timeout
        # Runs when the channel layer got its broker back: what was published meanwhile may be lost.
        self.layer_reconnected = layer_reconnected
        # Run at the end of a database outage, whatever part of the process noticed it (``database_outage``).
        self.database_reconnected = database_reconnected
        # Socket.IO packets a client may send: ``packet_burst`` at once, ``packet_rate`` per second
        # over time; more are dropped (each event may be relayed to every socket of a room).
        self.packet_rate = packet_rate
        self.packet_burst = packet_burst
        # The events of all the sessions of one client (``client_of`` their auth) in this process share
        # one such bucket too: more sessions give a client no more events, however many it opens.
        self._client_allowances: dict[object, _Allowance] = {}
        # On a broker: how long after its hello this process publishes to the rooms' own groups, while
        # the other processes bind its keys (its socket handshakes wait as long when it starts).
        self.settle_time = settle_time
        self.sessions: dict[str, Session] = {}
        # Sessions connecting a namespace or being taken over, by sid: a recheck that comes meanwhile is
        # done once they arrived (the state may have been derived before the change, the owner may not be
        # set yet, or the state is on its way from another process).
        self._arriving: dict[str, _Arriving] = {}
        # The sids of each recheck under way: a session handed over meanwhile is rechecked by its new owner.
        self._rechecking: list[set[str]] = []
        # The owners whose recheck the database refused: retried at each housekeeping round until it answers.
        self._recheck_due: set[str] = set()
        self._anonymous: OrderedDict[str, None] = OrderedDict()
        # The sids of this process's sessions in each room group it is bound to.
        self.room_members: dict[str, set[str]] = {}
        self._room_keys: dict[tuple[str, str], tuple[str, str]] = {}
        # On a broker: the other processes known (their ids), whether they all bound this process's
        # keys by now, and this process's key of each room group.
        self.peers: set[str] = set()
        # Processes that ended after a graceful stop (``eio.gone``), by their channel: a recheck waits for no
        # confirmation of theirs, though their liveness rows stay until a heartbeat round buries them, and
        # no request or takeover of their sessions is forwarded to them (``forward_target``).
        self.departed: dict[str, str] = {}
        # The other processes that said goodbye (``eio.bye``: they stop, or were found dead), by when: the
        # nodes a stopping one dropped reconnect elsewhere. Forgotten once such a process is buried.
        self.stopped: dict[str, float] = {}
        self.settled = False
        self._hello: asyncio.Event | None = None
        self._keys: dict[str, str] = {}
        # The room packets of this turn of the loop, in order: (group, packets), and their flush is due.
        self._outgoing: list[tuple[str, list[str]]] = []
        self._flush_due = False
        # Packets published from outside a loop, not sent yet: (namespace, room, packet), in order.
        self._unsent: deque[tuple[str, str, str]] = deque()
        # The other processes of this one's ``vantage6.serve``, linked directly (``link_siblings``).
        self.siblings: Siblings | None = None
        # Room messages this process published to and received from the layer (``eio.packets``) and
        # its siblings, for the metrics.
        self.room_messages = {"published": 0, "received": 0, "to_siblings": 0, "from_siblings": 0}
        # Sessions handed over to another process: their sid → (its channel, until when to forward).
        self.moved: dict[str, tuple[str, float]] = {}
        # Forwarded requests of this process waiting for their owner's answer, by request id: the owner's
        # channel and what takes the answer.
        self.pending: dict[str, tuple[str, Callable[[dict], Awaitable[None]]]] = {}
        # The long-polling GETs of this process forwarded to their owner and not answered yet, by request
        # id: their sid and what asks the owner to answer one at once (``stop``).
        self.forwarded_polls: dict[str, tuple[str, Callable[[], Awaitable[None]]]] = {}
        # The ids of forwarded GETs whose forwarding process asked for their answer before they reached
        # the session (``eio.release``): answered at once when they do.
        self._released: set[str] = set()
        # This process's channel on the layer of its loop (named by the sids of its sessions).
        self.channel = ""
        self._ready: asyncio.Event | None = None
        # Set when this process stops gracefully: its clients reconnect to another one at once, so the
        # disconnects that follow are no departures.
        self.stopping = False
        self._process = ""
        # When this process's last recorded beat started (None before its first), and the beat under way.
        self._beat_at: float | None = None
        self._beating: asyncio.Task | None = None
        self._beat_failed_at: float | None = None  # monotonic: the last failed catch-up beat of an outage
        # While that beat fails (the database is away), how often a delivery tries it again: every room
        # packet would otherwise cost an attempt and a warning.
        self.beat_retry = beat_retry
        self._listening_loop: asyncio.AbstractEventLoop | None = None
        self._housekeeping_loop: asyncio.AbstractEventLoop | None = None
        # Held weakly (a signal's default): a server no longer used is not kept alive by it.
        outage.database_recovered.connect(self._database_back)

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

    @property
    def beat_lapse(self) -> float:
        """How long without a beat a process is not waited for by a recheck (``recheck``): two beat
        periods, where a live process beats every one."""
        return 2 * self.ping_interval

    # --- the process channel --------------------------------------------------------------------------
    async def listening(self) -> None:
        """Make sure this process listens on its channel in the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._listening_loop is not loop:
            self._listening_loop = loop
            self._ready = asyncio.Event()
            # Sessions of an earlier loop (tests run several) have no channel any more.
            self.sessions, self.room_members, self.moved, self.pending = {}, {}, {}, {}
            self.forwarded_polls, self._released = {}, set()
            self._arriving, self._rechecking, self._recheck_due = {}, [], set()
            self._anonymous, self._anonymous_of, self._unconnected = OrderedDict(), {}, {}
            self.peers, self.settled, self._outgoing, self._flush_due = set(), False, [], False
            self._beat_at = None  # these sessions missed no change while an earlier loop's beat lapsed
            keep(loop.create_task(self._listen(self._ready)))
        await cast(asyncio.Event, self._ready).wait()

    @property
    def on_broker(self) -> bool:
        """Whether the layer is a broker's (whose routing leaves the publisher out, see ``from_process``)."""
        return hasattr(self.layer, "publish_soon")

    async def _listen(self, ready: asyncio.Event) -> None:
        layer = self.layer
        self.channel = await layer.new_channel()
        if not self.on_broker:
            ready.set()
        else:
            # Socket handshakes wait until the others know this process (at most a bound: its broker may
            # be away, and then it publishes to the rooms' groups until it comes back).
            asyncio.get_running_loop().call_later(self.settle_time + self.publish_timeout, ready.set)
        try:
            await layer.group_add(PROCESSES, self.channel)  # waits while the broker is away
        except Exception:
            logger.exception("could not listen to the other server processes")
        if self.on_broker:
            keep(asyncio.get_running_loop().create_task(self._introduce(ready)))
        while True:
            try:
                message = await layer.receive(self.channel)
            except StopConsumer:
                return  # the layer was closed: the process is stopping
            except Exception:
                logger.exception("receiving on the process channel failed")
                await asyncio.sleep(1)
                continue
            try:
                await self._on_message(message)
            except Exception:
                logger.exception("handling %s failed", message.get("type"))

    async def _on_message(self, message: dict) -> None:
        kind = message["type"]
        if kind == "eio.packets":
            self.room_messages["received"] += 1
            # This process delivered its own already, and a sibling's came over their link.
            if message.get("origin") != self.channel and not self._sibling(message):
                await self._deliver_room(message["group"], message["packets"])
        elif kind == "eio.hello":
            if message["process"] == self.process:
                cast(asyncio.Event, self._hello).set()
            elif not self._sibling(message):
                await self._learn(message["process"])
                peer = {"type": "eio.peer", "process": self.process, "family": self.family}
                await self.layer.send(message["reply"], peer)
        elif kind == "eio.peer" and not self._sibling(message):
            await self._learn(message["process"])
        elif kind == "eio.bye":
            if message["process"] != self.process:
                self.stopped[message["process"]] = time.monotonic()
            await self._forget(message["process"])
        elif kind == "eio.gone":
            # (A process of an older version names no channel: only its recheck is skipped.)
            channel = message.get("channel") or message["process"]
            self.departed[channel] = message["process"]
            await self._unanswered(channel)
        elif kind in ("eio.reply", "eio.held"):
            if (asked := self.pending.get(message["id"])) is not None:
                await asked[1](message)
        elif kind == "eio.forward":
            keep(asyncio.get_running_loop().create_task(self._forwarded(message)))
        elif kind == "eio.takeover":
            await self._hand_over(message)
        elif kind == "eio.release":
            await self._release(message)
        elif kind == "eio.cancel":
            session = self.sessions.get(message["sid"])
            if session is not None and session.waiter is not None and session.waiter.key == message["id"]:
                self._stop_waiting(session)
        elif kind == "sio.recheck" and message.get("origin") != self.channel:  # else the asker did its own
            checking = self._start_recheck(set(message["owners"]))
            if "reply" in message:
                keep(asyncio.get_running_loop().create_task(self._rechecked(checking, message["reply"])))

    async def _introduce(self, ready: asyncio.Event | None = None) -> None:
        """Tell the other processes of this one (each binds this process's key of its rooms, then
        answers with ``eio.peer``); settled ``settle_time`` after the hello came back to this process
        (all the others had it by then), publishing to the rooms' groups meanwhile."""
        self.settled = False
        hello = self._hello = asyncio.Event()
        await self.layer.group_send(
            PROCESSES,
            {"type": "eio.hello", "process": self.process, "reply": self.channel, "family": self.family},
        )
        await hello.wait()
        await asyncio.sleep(self.settle_time)
        if self._hello is hello:  # not introduced again meanwhile (the broker came back once more)
            self.settled = True
            if ready is not None:
                ready.set()

    @property
    def family(self) -> str:
        """What the processes of this one's ``vantage6.serve`` share ("" for a process alone)."""
        return self.siblings.family if self.siblings is not None else ""

    def _sibling(self, message: dict) -> bool:
        """Whether ``message`` comes from a sibling (whose room packets come over their link)."""
        return self.siblings is not None and message.get("family") == self.siblings.family

    async def link_siblings(self, siblings: Siblings) -> None:
        """Exchange the room packets of this process's loop (the running one) with its siblings over
        their links; the broker keeps the others."""
        self.siblings = siblings
        await siblings.start(self._from_sibling)

    async def _from_sibling(self, group: str, packets: list[str]) -> None:
        self.room_messages["from_siblings"] += 1
        await self._deliver_room(group, packets)

    async def _learn(self, process: str) -> None:
        """Another process (not a sibling) is known: this process's rooms are bound to its keys."""
        if process not in self.peers:
            self.peers.add(process)
            # Not a room left meanwhile: its leave unbound the key already.
            await self._change_keys_of(process, self.layer.group_add, skip_left=True)

    async def _forget(self, process: str) -> None:
        """Another process stopped (or was found dead): its keys are unbound."""
        if process in self.peers:
            self.peers.discard(process)
            # Also a room left meanwhile: its leave no longer unbinds this key.
            await self._change_keys_of(process, self.layer.group_discard, skip_left=False)

    async def _change_keys_of(
        self, process: str, change: Callable[[str, str], Awaitable[None]], *, skip_left: bool
    ) -> None:
        """``change`` (the layer's ``group_add`` or ``group_discard``) of this process's channel for
        ``process``'s key of each room this process is in, a batch at a time."""
        groups = list(self.room_members)
        for start in range(0, len(groups), _BINDINGS_AT_ONCE):
            await asyncio.gather(
                *(
                    change(from_process(group, process), self.channel)
                    for group in groups[start : start + _BINDINGS_AT_ONCE]
                    if not skip_left or group in self.room_members
                )
            )

    def owner_of(self, sid: str) -> str | None:
        """The channel of the process that made ``sid``, if this deployment signed it."""
        body, _, mac = sid.partition(SIGNED)
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            return _unb64(body)[_NONCE_BYTES:].decode()
        except ValueError:
            return None

    def forward_target(self, sid: str) -> str | None:
        """The channel of the process to ask for the session ``sid`` of another process: its owner, or
        the process it moved to from here; None if no live process can have it (not signed here, or its
        process ended after a graceful stop), and then the session is unknown at once."""
        owner = self.owner_of(sid)
        if owner is None:
            return None
        target = self.moved.get(sid, (owner,))[0]
        return None if target == self.channel or target in self.departed else target

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES])

    def _new_sid(self) -> str:
        body = _b64(secrets.token_bytes(_NONCE_BYTES) + self.channel.encode())
        return f"{body}{SIGNED}{self._mac(body)}"

    async def ask(self, channel: str, message: dict, handler: Callable[[dict], Awaitable[None]]) -> str:
        """Send a request to another process; its answers go to ``handler``. The request's id."""
        request_id = new_id()
        self.pending[request_id] = (channel, handler)
        await self.layer.send(channel, {**message, "reply": self.channel, "id": request_id})
        return request_id

    async def _unanswered(self, channel: str) -> None:
        """The requests sent to ``channel``, whose process ended, get their answer now: the session is
        unknown (no state is handed over), as if it had not answered within the bound."""
        status, body, content_type = UNKNOWN_SESSION
        for request_id, (asked, handler) in list(self.pending.items()):
            if asked == channel:
                answer = {"type": "eio.reply", "id": request_id, "status": status, "body": body}
                await handler({**answer, "content_type": content_type})

    def _remote(self, message: dict) -> Reply:
        async def reply(status: int, body: bytes, content_type: str) -> None:
            answer = {"type": "eio.reply", "id": message["id"], "status": status, "body": body}
            await self.layer.send(message["reply"], {**answer, "content_type": content_type})

        return reply

    async def _forwarded(self, message: dict) -> None:
        """A long-polling request of one of this process's sessions, received by another process."""
        sid = message["sid"]
        reply = self._remote(message)
        if (moved := self.moved.get(sid)) is not None:
            if moved[0] in self.departed:  # served there until that process ended
                await reply(*UNKNOWN_SESSION)
            else:
                await self.layer.send(moved[0], message)  # the session's websocket is served there now
            return
        session = self.sessions.get(sid)
        # (``get``: a request from a process of an older version names no address, and is refused.)
        if session is None or session.address != message.get("address"):
            await reply(*UNKNOWN_SESSION)
            return

        async def held() -> None:
            await self.layer.send(message["reply"], {"type": "eio.held", "id": message["id"]})

        await self.serve_polling(session, message["method"], message["body"], reply, message["id"], held)

    async def _release(self, message: dict) -> None:
        """The process that forwarded a GET of one of this process's sessions stops: the GET is answered
        now (a NOOP if no packet waits), where its process can still pass the answer on, instead of
        when a packet comes. One that has not reached the session yet is answered as it does."""
        sid, key = message["sid"], message["id"]
        if (moved := self.moved.get(sid)) is not None:
            if moved[0] not in self.departed:
                await self.layer.send(moved[0], message)  # the GET was passed on there
            return
        session = self.sessions.get(sid)
        if session is None:
            return
        if (waiter := session.waiter) is not None and waiter.key == key:
            self._stop_waiting(session)
            await waiter.reply(200, p.encode_eio(p.NOOP).encode(), TEXT)
            return
        # Its ``eio.forward`` is still on its way to the session (or was answered already): bounded, since
        # an id that never comes stays only as long as its forwarding process waits for it.
        self._released.add(key)
        asyncio.get_running_loop().call_later(self.forward_timeout, self._released.discard, key)

    def relays(self, sid: str) -> bool:
        """Whether a long-polling GET of ``sid`` this process forwarded waits for its owner's answer."""
        return any(forwarded == sid for forwarded, _ in self.forwarded_polls.values())

    # --- sessions ------------------------------------------------------------------------------------
    async def open_session(
        self, transport: str, headers: dict[str, str], sink: Sink | None = None, *, address: str = ""
    ) -> tuple[Session, str]:
        """A new session of this process (of websocket ``sink`` if given) for the client at ``address``,
        and its Engine.IO OPEN packet."""
        await self.listening()
        if self.stopping:
            # A handshake that still reaches this process (over a proxy's kept-alive connection, left for
            # the proxy to close): its client would be dropped moments after it connected. Refused, it
            # connects again at once, to a live process.
            raise Unavailable(STOPPING)
        try:
            auth, authenticated = await database_sync_to_async(self.authenticate)(headers)
        except DatabaseError as exc:
            status, text = database_failed(f"{transport} handshake refused", exc)
            raise Unavailable(error(status, 3, text)) from None
        expires_at = None if authenticated else time.time() + self.ping_interval + self.ping_timeout
        session = Session(self._new_sid(), transport, auth, expires_at=expires_at, address=address)
        session.sink = sink
        await self._adopt(session)
        handshake = {
            "sid": session.sid,
            "upgrades": ["websocket"] if transport == POLLING else [],
            "pingInterval": int(self.ping_interval * 1000),
            "pingTimeout": int(self.ping_timeout * 1000),
            "maxPayload": self.max_payload,
        }
        return session, p.encode_eio(p.OPEN, json.dumps(handshake, separators=(",", ":")))

    async def _adopt(self, session: Session) -> None:
        self.sessions[session.sid] = session
        if session.expires_at is not None:
            if session.sink is None:
                of_address = self._anonymous_of.setdefault(session.address, OrderedDict())
                await self._bound(of_address, session.sid, self.anonymous_per_address)
                await self._bound(self._anonymous, session.sid, self.anonymous_capacity)
        elif (client := self.client_of(session.auth)) is None:
            return
        elif not session.namespaces:
            await self._bound(
                self._unconnected.setdefault(client, OrderedDict()), session.sid, self.max_unconnected
            )
        else:  # taken over from another process
            await self._bound_connected(session, client)

    async def _bound_connected(self, session: Session, client: object) -> None:
        """Add ``session`` to the connected ones of its client; those over its bound end, the oldest first,
        but not those whose connect is under way (their admission is not undone halfway: each bounds the
        others once it arrived)."""
        sids = self._connected_sids.setdefault(client, OrderedDict())
        sids[session.sid] = None
        excess = len(sids) - self.max_connected(session.auth)
        settled = [sid for sid in sids if sid not in self._arriving and sid != session.sid]
        for sid in settled[: max(0, excess)]:
            if (dropped := self.sessions.get(sid)) is not None:
                await self.drop(dropped)
            sids.pop(sid, None)

    async def _bound(self, sids: OrderedDict[str, None], sid: str, capacity: int) -> None:
        """Add ``sid``; sessions over ``capacity`` end, the oldest first."""
        sids[sid] = None
        while len(sids) > capacity:
            oldest, _ = sids.popitem(last=False)
            if (dropped := self.sessions.get(oldest)) is not None:
                await self.drop(dropped)

    def _not_anonymous(self, session: Session) -> None:
        """``session`` ended, moved or upgraded: it counts among the unauthenticated long-polling ones no
        longer."""
        self._anonymous.pop(session.sid, None)
        _forget(self._anonymous_of, session.address, session.sid)

    def _connected(self, session: Session) -> None:
        """``session`` connected a namespace (or ended): it no longer counts as unconnected."""
        if session.expires_at is not None:
            return
        _forget(self._unconnected, self.client_of(session.auth), session.sid)

    def _gone(self, session: Session) -> None:
        """``session`` ended or moved to another process: it counts for its client here no longer."""
        self._not_anonymous(session)
        self._connected(session)
        if session.expires_at is None:
            _forget(self._connected_sids, self.client_of(session.auth), session.sid)

    async def drop(self, session: Session) -> None:
        """End a session from the server's side: a websocket is closed, a long-polling client
        learns at its next request that its session is unknown."""
        if session.sink is not None:
            await session.sink.close()  # its consumer's disconnect ends the session
        await self.disconnect(session)

    async def disconnect(self, session: Session) -> None:
        """End a session: its namespaces' disconnect handlers run, then it is forgotten."""
        if self.sessions.get(session.sid) is not session:
            return  # ended already, or moved
        del self.sessions[session.sid]
        self._gone(session)
        waiter = self._stop_waiting(session)
        if (arriving := self._arriving.get(session.sid)) is not None:
            # A connect under way: its disconnect handlers would run before its admission recorded what
            # they undo (a node left online with no socket). They run once it arrived (``_arrival``).
            arriving.ended = session
        else:
            await self._leave_all(session)
        if waiter is not None:
            await waiter.reply(200, p.encode_eio(p.NOOP).encode(), TEXT)

    async def _leave_all(self, session: Session) -> None:
        """An ended session leaves its namespaces (their disconnect handlers run) and its rooms."""
        for namespace in list(session.namespaces):
            await self._leave_namespace(session, namespace)
        for namespace, room in list(session.rooms):
            await self.leave(session, namespace, room)

    async def _leave_namespace(self, session: Session, namespace: str) -> None:
        await self._disconnected(Socket(self, session, namespace))
        del session.namespaces[namespace]

    async def _disconnected(self, socket: Socket) -> None:
        """The namespace's disconnect handler runs; the socket leaves the rooms it is still in."""
        try:
            await self.namespaces[socket.namespace].on_disconnect(socket)
        except DatabaseError as exc:
            database_failed(f"disconnect of session {socket.session.sid} not recorded", exc)
        except Exception:
            logger.exception("disconnect handler of %s failed", socket.namespace)
        for namespace, room in list(socket.session.rooms):
            if namespace == socket.namespace:
                await socket.leave(room)

    async def revoke(self, session: Session, event: str) -> None:
        """The client of ``session`` is no longer who its handshake said (its login ended, say).

        ``event`` is emitted to it in each namespace, whose disconnect handler then runs, and it leaves
        its rooms: it stays connected, with no state, owner or room (clients told ``event`` go and
        identify again).
        """
        if not session.owner or self.sessions.get(session.sid) is not session:
            return
        session.owner = ""
        for namespace, entry in session.namespaces.items():
            socket = Socket(self, session, namespace)
            await socket.emit(event)
            await self._disconnected(socket)
            entry["state"] = {}

    async def recheck(self, owners: list[str], awaited: Iterable[str] = ()) -> None:
        """In every process, the sessions of ``owners`` are checked again: those ``verify`` finds are
        revoked, and the namespaces derive again what the others hold (``on_recheck``). Returns once each
        process of ``awaited`` (those alive, for a request that changed rights) has done so and said so
        (``sio.rechecked``), or ``publish_timeout`` after the publication, with a warning: a process that
        does not answer is dead (its sockets went with it) or stalled. Called in this process's loop, its
        own part is awaited directly. A session connecting meanwhile is checked once connected; a process
        whose broker was away (the message may be lost) checks all its sessions when the broker is back."""
        layer = self.layer
        message: dict = {"type": "sio.recheck", "owners": owners}
        # In memory this process is the only one, and another loop's acknowledgement would not wake this one.
        others = set() if self.in_memory else set(awaited)
        if others:  # those departed not among them: their rows are gone, so are they
            self.departed = {channel: gone for channel, gone in self.departed.items() if gone in others}
            others -= set(self.departed.values())
        local = None
        if asyncio.get_running_loop() is self._listening_loop:
            local = self._start_recheck(set(owners))
            message["origin"] = self.channel
            others.discard(self.process)
        if others:
            message["reply"] = await layer.new_channel()
        await layer.group_send(PROCESSES, message)
        if local is not None:
            await asyncio.wait({local}, timeout=self.publish_timeout)  # a connect here may be held
        if others:
            await self._acknowledged(message["reply"], others)

    @property
    def in_memory(self) -> bool:
        """Whether the channel layer is the in-memory one (this process is the only one)."""
        return bridge.in_memory(self.layer_alias)

    async def _acknowledged(self, reply: str, processes: set[str]) -> None:
        """Until each of ``processes`` acknowledged on ``reply``, at most ``publish_timeout``."""
        try:
            async with asyncio.timeout(self.publish_timeout):
                while processes:
                    processes.discard((await self.layer.receive(reply))["process"])
        except TimeoutError:
            logger.warning(
                "%d server processes did not confirm a recheck within %s s: dead or stalled",
                len(processes),
                self.publish_timeout,
            )

    async def _rechecked(self, checking: asyncio.Task | None, reply: str) -> None:
        """Acknowledge a recheck once this process's part (``checking``, if any) is done."""
        if checking is not None:
            await checking
        await self.layer.send(reply, {"type": "sio.rechecked", "process": self.process})

    def _start_recheck(self, owners: set[str] | None) -> asyncio.Task | None:
        """Check the sessions of ``owners`` (None: every identified one) again, in the background, with
        one ``verify`` and one ``on_recheck`` per namespace for all of them; a session still connecting or
        being taken over is checked once it arrived. Its task, done once all of those are, if there are
        any: what a confirmation of the recheck waits for (``_rechecked``)."""
        arrivals = list(self._arriving.values())
        for arriving in arrivals:
            arriving.note(owners)
        sessions = [
            session
            for session in self.sessions.values()
            if session.owner
            and (owners is None or session.owner in owners)
            and session.sid not in self._arriving
        ]
        if not sessions and not arrivals:
            return None
        checking = self._recheck(sessions) if sessions else None  # under way from now on (``_hand_over``)
        task = asyncio.get_running_loop().create_task(self._checked(checking, arrivals))
        keep(task)
        return task

    async def _checked(
        self, checking: Coroutine[object, object, None] | None, arrivals: list[_Arriving]
    ) -> None:
        if checking is not None:
            await checking
        for arriving in arrivals:
            await arriving.settled.wait()

    async def _arrived(self, arriving: _Arriving, session: Session | None) -> None:
        """After an arrival of ``session`` (None: it did not come): checked again if a recheck came
        meanwhile (``missed``) and no other arrival of it is still under way (``count``)."""
        if arriving.count:
            return
        try:
            if session is not None and arriving.missed(session.owner):
                await self._recheck([session])
        finally:
            arriving.settled.set()

    def _recheck(self, sessions: list[Session]) -> Coroutine[object, object, None]:
        """The recheck of ``sessions``, under way from now on (a session handed over before it is done is
        rechecked by its new owner), though it runs only when awaited or scheduled."""
        running = {session.sid for session in sessions}
        self._rechecking.append(running)
        return self._check_again(sessions, running)

    async def _check_again(self, sessions: list[Session], running: set[str]) -> None:
        try:
            await self._derive_again(sessions)
        except DatabaseError as exc:
            # Their rooms may be ones they no longer reach: retried until the database answers.
            self._recheck_due |= {session.owner for session in sessions if session.owner}
            database_failed(f"recheck of {len(sessions)} sessions postponed", exc)
        except Exception:
            logger.exception("recheck of %d sessions failed", len(sessions))
        finally:
            self._rechecking.remove(running)

    async def _derive_again(self, sessions: list[Session]) -> None:
        """Revoke those of ``sessions`` that ``verify`` finds; the namespaces derive again what the others
        hold (``on_recheck``)."""
        await self._verify(sessions)
        kept = [
            session for session in sessions if session.owner and self.sessions.get(session.sid) is session
        ]
        for namespace, handler in self.namespaces.items():
            sockets = [
                Socket(self, session, namespace) for session in kept if namespace in session.namespaces
            ]
            if sockets:
                await handler.on_recheck(sockets)

    @contextlib.asynccontextmanager
    async def _arrival(self, sid: str) -> AsyncIterator[_Arriving]:
        """While the body runs, session ``sid`` is arriving (see ``_Arriving``); the caller rechecks it
        afterwards (``_arrived``), unless the body failed (no recheck waits for it then). A session that
        ended meanwhile leaves its namespaces and rooms once the last of its arrivals is done."""
        arriving = self._arriving.setdefault(sid, _Arriving())
        arriving.count += 1
        try:
            yield arriving
        except BaseException:
            arriving.settled.set()
            raise
        finally:
            arriving.count -= 1
            if not arriving.count:
                self._arriving.pop(sid, None)
                arriving.done.set()
                if arriving.ended is not None:
                    await self._leave_all(arriving.ended)

    # --- rooms ------------------------------------------------------------------------------------------
    async def join(self, session: Session, namespace: str, room: str) -> None:
        if session.expires_at is not None:
            raise ValueError("an unauthenticated session cannot join a room")
        key = self._room_keys.setdefault((namespace, room), (namespace, room))  # one copy for all sessions
        if self.sessions.get(session.sid) is not session or key in session.rooms:
            return
        session.rooms.append(key)
        await self._bind(room_group(namespace, room), session.sid)

    async def leave(self, session: Session, namespace: str, room: str) -> None:
        if (namespace, room) in session.rooms:
            session.rooms.remove((namespace, room))
            await self._unbind(room_group(namespace, room), session.sid)

    async def _bind(self, group: str, sid: str) -> None:
        """Bound once the broker has the bindings: what is published from then on reaches the room."""
        members = self.room_members.get(group)
        if members is None:
            members = self.room_members[group] = {sid}
            keys = [group, *(from_process(group, process) for process in self.peers)]
            await self._change_bindings(self.layer.group_add, keys)
        else:
            members.add(sid)

    async def _unbind(self, group: str, sid: str) -> None:
        members = self.room_members.get(group)
        if members is not None:
            members.discard(sid)
            if not members:
                del self.room_members[group]
                keys = [group, *(from_process(group, process) for process in self.peers)]
                await self._change_bindings(self.layer.group_discard, keys)

    async def _change_bindings(self, change: Callable[[str, str], Awaitable[None]], keys: list[str]) -> None:
        """``change`` (the layer's ``group_add`` or ``group_discard``) of this process's channel for each
        of ``keys``; not awaited while the broker is away (it is done once the broker is back, whose
        absence meanwhile ``layer_reconnected`` makes up for): a socket joins or leaves at once, and its
        sibling processes' events reach it meanwhile."""
        changing = asyncio.gather(*(change(key, self.channel) for key in keys))
        if getattr(self.layer, "connected", True):
            await changing
        else:
            changing.add_done_callback(_log_failure)
            keep(changing)

    # --- long-polling -------------------------------------------------------------------------------------
    async def serve_polling(
        self,
        session: Session,
        method: str,
        body: bytes,
        reply: Reply,
        key: str = "",
        held: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Answer a long-polling GET or POST of a session of this process (``held`` when a GET waits)."""
        if session.transport != POLLING:
            await reply(*BAD_REQUEST)
            return
        session.active_at = time.monotonic()
        if method == "POST":
            await self._posted(session, body, reply)
            return
        if session.outbox:
            packets, session.outbox, session.queued = session.outbox, [], 0
            await reply(200, p.encode_payload(packets).encode(), TEXT)
            return
        if key in self._released:  # its forwarding process stops: answered while it can pass it on
            self._released.discard(key)
            await reply(200, p.encode_eio(p.NOOP).encode(), TEXT)
            return
        if self.stopping:
            # Not held until this process ends (a proxy retries a dropped GET on another process, which
            # forwards it here): the client starts over with a live process at once.
            await reply(*UNKNOWN_SESSION)
            return
        due = session.ping_sent_at + self.ping_interval - time.time()
        if due <= 0:
            session.ping_sent_at = time.time()
            await reply(200, p.encode_eio(p.PING).encode(), TEXT)
            return
        if (previous := self._stop_waiting(session)) is not None:
            await previous.reply(200, p.encode_eio(p.NOOP).encode(), TEXT)  # one waiting GET at a time
        waiter = session.waiter = _Waiter(reply, key)
        waiter.timer = asyncio.get_running_loop().call_later(due, self._ping_due, session, waiter)
        if held is not None:
            await held()

    async def _posted(self, session: Session, body: bytes, reply: Reply) -> None:
        try:
            packets = p.decode_payload(body.decode())
        except (UnicodeDecodeError, p.PacketError):
            await reply(*BAD_REQUEST)
            return
        for packet_type, data in packets:
            if packet_type == p.MESSAGE:
                await self.receive(session, data)
            elif packet_type == p.CLOSE:
                await self.disconnect(session)
                break
        await reply(200, b"ok", HTML)

    def _ping_due(self, session: Session, waiter: _Waiter) -> None:
        if session.waiter is waiter:
            session.waiter = None
            session.ping_sent_at = time.time()
            keep(asyncio.get_running_loop().create_task(waiter.reply(200, b"2", TEXT)))

    def stop(self) -> None:
        """This process stops gracefully: the GETs its long-polling sessions wait with (here or forwarded
        from another process) and send from now on are answered so that their clients start over with
        another process. The sessions are not ended here: their nodes are not announced offline. The
        GETs it forwarded to the owners of other sessions, which live on, are answered by their owners
        now (with what waits for them), so that no packet an owner hands one is lost with the stop."""
        self.stopping = True
        for session in self.sessions.values():
            if (waiter := self._stop_waiting(session)) is not None:
                keep(asyncio.ensure_future(waiter.reply(*UNKNOWN_SESSION)))
        for _, release in list(self.forwarded_polls.values()):
            keep(asyncio.ensure_future(release()))
        if self.channel and self.on_broker:
            # What it still publishes goes to the rooms' groups, which the others stay bound to.
            self.settled = False
            keep(asyncio.ensure_future(self._bye(self.process)))

    async def depart(self) -> None:
        """This process ends after a graceful stop (its sockets dropped, its requests answered): the
        others wait for no confirmation of its from now on (``recheck``)."""
        if self.channel and self.on_broker:
            with contextlib.suppress(Exception):  # the broker away: they wait the bound, as for the dead
                async with asyncio.timeout(self.publish_timeout):
                    gone = {"type": "eio.gone", "process": self.process, "channel": self.channel}
                    await self.layer.group_send(PROCESSES, gone)

    async def _bye(self, process: str) -> None:
        """Every process forgets ``process`` (it stops, or was found dead)."""
        await self.layer.group_send(PROCESSES, {"type": "eio.bye", "process": process})

    def _stop_waiting(self, session: Session) -> _Waiter | None:
        waiter, session.waiter = session.waiter, None
        if waiter is not None and waiter.timer is not None:
            waiter.timer.cancel()
        return waiter

    def stop_waiting(self, session: Session, key: str) -> None:
        """The client of the GET waiting with ``key`` went away: packets wait for its next GET."""
        if session.waiter is not None and session.waiter.key == key:
            self._stop_waiting(session)
            session.active_at = time.monotonic()

    # --- websockets -----------------------------------------------------------------------------------------
    async def take_over(self, sid: str, address: str) -> Session | None:
        """The long-polling session ``sid`` in this process, for its websocket upgrade from ``address``:
        taken over from the process that owns it if need be; None if no process has it for a client at
        that address (then it stays as it is). A recheck that comes while its state is on its way (its
        old owner no longer has it), or that was under way there, is done once it is here. A stopping
        process takes none: its websocket would be dropped moments after the upgrade, and the client keeps
        polling its owner instead."""
        await self.listening()
        if self.stopping:
            return None
        if sid in self.sessions:
            here = self.sessions[sid]
            return here if here.address == address else None
        target = self.forward_target(sid)
        if target is None:
            return None
        async with self._arrival(sid) as arriving:
            session = await self._take_over_from(target, sid, address, arriving)
        await self._arrived(arriving, session)
        return session

    async def _take_over_from(
        self, target: str, sid: str, address: str, arriving: _Arriving
    ) -> Session | None:
        answered: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

        async def handler(message: dict) -> None:
            if not answered.done():
                answered.set_result(message)

        request_id = await self.ask(target, {"type": "eio.takeover", "sid": sid, "address": address}, handler)
        try:
            message = await asyncio.wait_for(answered, self.forward_timeout)
        except TimeoutError:
            return None
        finally:
            self.pending.pop(request_id, None)
        if message.get("state") is None:
            return None
        if message.get("recheck"):
            arriving.note(None)
        session = Session.taken_over(message["state"])
        await self._adopt(session)
        for namespace, room in session.rooms:
            await self._bind(room_group(namespace, room), sid)
        for namespace in list(session.namespaces):
            try:
                await self.namespaces[namespace].on_move(Socket(self, session, namespace))
            except DatabaseError as exc:
                database_failed(f"move of session {sid} not recorded", exc)
            except Exception:
                logger.exception("move handler of %s failed", namespace)
        return session

    async def _hand_over(self, message: dict) -> None:
        """Another process takes one of this process's sessions over: its state goes there, and
        requests that still come here for it follow it for a while. A session still arriving (a connect
        under way) is handed over once it arrived; a recheck of it under way here is done there."""
        sid = message["sid"]
        if sid in self._arriving:
            keep(asyncio.get_running_loop().create_task(self._hand_over_once_arrived(message)))
            return
        session = self.sessions.get(sid)
        state = None
        if session is not None and session.transport == POLLING and session.address == message.get("address"):
            del self.sessions[sid]
            self._gone(session)
            for namespace, room in session.rooms:
                await self._unbind(room_group(namespace, room), sid)
            state = session.handover()
            self.moved[sid] = (message["reply"], time.monotonic() + self.ping_interval + self.ping_timeout)
            if (waiter := self._stop_waiting(session)) is not None:
                await waiter.reply(200, p.encode_eio(p.NOOP).encode(), TEXT)
        recheck = any(sid in running for running in self._rechecking)
        answer = {"type": "eio.reply", "id": message["id"], "state": state, "recheck": recheck}
        await self.layer.send(message["reply"], answer)

    async def _hand_over_once_arrived(self, message: dict) -> None:
        """``_hand_over`` once the session's connects are done (their ack, owner and rooms are part of its
        state); refused if that takes longer than the other process waits, so that the session stays."""
        try:
            async with asyncio.timeout(self.forward_timeout / 2):
                while (arriving := self._arriving.get(message["sid"])) is not None:
                    await arriving.done.wait()
        except TimeoutError:
            answer = {"type": "eio.reply", "id": message["id"], "state": None}
            await self.layer.send(message["reply"], answer)
            return
        await self._hand_over(message)

    async def upgraded(self, session: Session, sink: Sink) -> None:
        """The client switched ``session`` to its websocket: what waited for polling goes there."""
        session.transport = WEBSOCKET
        self._not_anonymous(session)
        session.ping_sent_at = time.time()
        # A NOOP left from the probe was meant for a long-polling GET.
        queued = [packet for packet in session.outbox if packet != p.encode_eio(p.NOOP)]
        session.outbox, session.queued = [], 0
        session.sink = sink
        # Before the waiting GET is answered: a packet sent to the sink meanwhile (the rest of a connect's
        # acknowledgement, ``sync`` and notices) would overtake those that waited.
        await sink.send_packets(queued)
        if (waiter := self._stop_waiting(session)) is not None:
            await waiter.reply(200, p.encode_eio(p.NOOP).encode(), TEXT)

    async def probed(self, session: Session) -> None:
        """The client probed its websocket: its waiting (or next) GET returns, so that it can switch."""
        await self.send(session, [p.encode_eio(p.NOOP)])

    def websockets(self) -> list[Session]:
        return [session for session in self.sessions.values() if session.sink is not None]

    # --- Socket.IO packets from clients -------------------------------------------------------------------
    async def receive(self, session: Session, data: str) -> None:
        """Handle the data of an Engine.IO MESSAGE packet from the client."""
        if not self.admits(session):
            return
        try:
            packet = p.decode_sio(data)
        except p.PacketError as exc:
            logger.info("session %s: ignored packet: %s", session.sid, exc)
            return
        if packet.type == p.CONNECT:
            if self.admits(session, max(1, self.packet_burst // CONNECTS_AT_ONCE) - 1):  # one was taken above
                await self._connect(session, packet.namespace)
        elif packet.namespace not in session.namespaces:
            return
        elif packet.type == p.DISCONNECT:
            await self._leave_namespace(session, packet.namespace)
            if not session.namespaces:
                session.owner = ""
        elif packet.type == p.EVENT and self._client_admits(session):
            await self._event(session, packet)

    def admits(self, session: Session, cost: int = 1) -> bool:
        """Whether the client of ``session`` may send ``cost`` more packets now over it (a token bucket);
        the first refusal of each minute is logged."""
        if self._take(session, cost):
            return True
        if self._warn(session):
            logger.warning(
                "session %s (%s) sends more than %s packets per second; the excess is dropped",
                session.sid,
                session.owner or "unidentified",
                self.packet_rate,
            )
        return False

    def _client_admits(self, session: Session) -> bool:
        """Whether the authenticated client of ``session`` may send one more event now over all its
        sessions in this process (a bucket of its own, of the same bounds); the first refusal of each
        minute is logged."""
        if session.expires_at is not None:
            return True  # unauthenticated: it joins no room, and its session ends soon
        if (client := self.client_of(session.auth)) is None:
            return True  # no client known: its session's bucket alone
        if (bucket := self._client_allowances.get(client)) is None:  # no bucket made per event
            bucket = self._client_allowances[client] = _Allowance()
        if self._take(bucket, 1):
            return True
        if self._warn(bucket):
            logger.warning(
                "%s sends more than %s packets per second over all its sockets; the excess is dropped",
                session.owner or f"client {client}",
                self.packet_rate,
            )
        return False

    def _take(self, bucket: Session | _Allowance, cost: int) -> bool:
        now = time.monotonic()
        allowance = min(self.packet_burst, bucket.allowance + (now - bucket.received_at) * self.packet_rate)
        bucket.received_at = now
        bucket.allowance = allowance - cost if allowance >= cost else allowance
        return allowance >= cost

    @staticmethod
    def _warn(bucket: Session | _Allowance) -> bool:
        """Whether a refusal of ``bucket`` is to be logged: the first of each minute."""
        now = time.monotonic()
        if now - bucket.warned_at < 60:
            return False
        bucket.warned_at = now
        return True

    def _forget_full_allowances(self) -> None:
        """The client buckets that filled up again are forgotten: a new one is full too."""
        now = time.monotonic()
        self._client_allowances = {
            client: bucket
            for client, bucket in self._client_allowances.items()
            if bucket.allowance + (now - bucket.received_at) * self.packet_rate < self.packet_burst
        }

    async def _connect(self, session: Session, namespace: str) -> None:
        handler = self.namespaces.get(namespace)
        if handler is None:
            error_packet = p.SioPacket(p.CONNECT_ERROR, namespace, {"message": "Invalid namespace"})
            await self.send(session, [error_packet.encode()])
            return
        if namespace not in session.namespaces:
            session.namespaces[namespace] = {"sid": new_id(), "state": {}}
            self._connected(session)
        async with self._arrival(session.sid) as arriving:
            await self._admit(session, namespace, handler)
        await self._arrived(arriving, session)
        if (
            self.sessions.get(session.sid) is session
            and session.expires_at is None
            and (client := self.client_of(session.auth)) is not None
        ):
            await self._bound_connected(session, client)

    async def _admit(self, session: Session, namespace: str, handler: Namespace) -> None:
        """The namespace's admission, the CONNECT ack (or the refusal) and its connect handler."""
        socket = Socket(self, session, namespace)
        try:
            await handler.on_admit(socket)
        except DatabaseError as exc:
            _, text = database_failed(f"connect of session {session.sid} to {namespace} refused", exc)
            del session.namespaces[namespace]
            refusal = p.SioPacket(p.CONNECT_ERROR, namespace, {"message": text})
            await self.send(session, [refusal.encode()])
            # A plain drop: the client connects again by itself (it would not after a DISCONNECT).
            await self.drop(session)
            return
        except Exception:
            logger.exception("admission handler of %s failed", namespace)
        if self.sessions.get(session.sid) is not session:
            return  # ended meanwhile: no ack, and its disconnect handler runs instead (``disconnect``)
        await self.send(session, [p.SioPacket(p.CONNECT, namespace, {"sid": socket.sid}).encode()])
        try:
            await handler.on_connect(socket)
        except Exception:
            logger.exception("connect handler of %s failed", namespace)

    async def _event(self, session: Session, packet: p.SioPacket) -> None:
        if await self._caught_up() and self.sessions.get(session.sid) is not session:
            return  # revoked by the check of all sockets
        socket = Socket(self, session, packet.namespace)
        event, args = cast(list, packet.data)[0], cast(list, packet.data)[1:]  # decode_sio checked it
        try:
            result = await self.namespaces[packet.namespace].on_event(socket, event, args)
        except DatabaseError as exc:
            database_failed(f"event {client_text(event)} of session {session.sid} dropped", exc)
            result = None
        except Exception:
            logger.exception("handler of event %s failed", client_text(event))
            result = None
        if packet.ack_id is not None:
            data = list(result) if isinstance(result, list | tuple) else [] if result is None else [result]
            ack = p.SioPacket(p.ACK, packet.namespace, data, packet.ack_id)
            await self.send(session, [ack.encode()])

    # --- delivery ------------------------------------------------------------------------------------------
    async def send(self, session: Session, packets: list[str]) -> None:
        """Send Engine.IO packets to a session of this process."""
        await self._deliver(session, packets)

    async def _deliver(self, session: Session, packets: list[str]) -> None:
        if session.sink is not None:
            await session.sink.send_packets(packets)
            return
        if (waiter := self._stop_waiting(session)) is not None:
            await waiter.reply(200, p.encode_payload(packets).encode(), TEXT)
            return
        session.queued += sum(len(packet) for packet in packets)
        if session.queued > self.max_queued:
            logger.info("session %s did not fetch its packets; ended", session.sid)
            await self.disconnect(session)
            return
        session.outbox += packets

    async def emit(self, event: str, data: object = None, *, room: str, namespace: str = "/") -> None:
        """Send an event to every socket of a room on every instance."""
        packet = p.event_packet(namespace, event, data)
        await self._fan_out(namespace, room, packet)

    def publish(self, event: str, data: object = None, *, room: str, namespace: str = "/") -> None:
        """``emit`` for synchronous code, which does not wait for the broker (a REST request answers
        at once; its events go out in order, once the broker is there; those of a request its loop
        answers go out right after the answer); in an event loop's thread it is scheduled instead.
        On a broker, the loop of this process's sockets emits it when it runs: its sockets get it at
        once, and only the room's other processes through the broker."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            keep(loop.create_task(self.emit(event, data, room=room, namespace=namespace)))
            return
        # Every thread's packets wait in one queue, in the order they were published, for whichever
        # loop sends them first.
        self._unsent.append((namespace, room, p.event_packet(namespace, event, data)))
        if bridge.after_answer(self._send_unsent):
            return  # a request's: its loop sends them once the answer is written
        sockets_loop = self._listening_loop
        if sockets_loop is not None and sockets_loop.is_running() and not bridge.in_memory(self.layer_alias):
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the publisher's loop takes it
                sockets_loop.call_soon_threadsafe(self._send_unsent)
                return
        bridge.post(self._fan_out_unsent, self.layer_alias)

    def _send_unsent(self) -> None:
        """In a loop: start the fan-out of every packet ``publish`` queued, in order."""
        loop = asyncio.get_running_loop()
        while (unsent := self._next_unsent()) is not None:
            task = loop.create_task(self._fan_out(*unsent))
            keep(task)
            task.add_done_callback(_log_failure)

    async def _fan_out_unsent(self) -> None:
        while (unsent := self._next_unsent()) is not None:
            await self._fan_out(*unsent)

    def _next_unsent(self) -> tuple[str, str, str] | None:
        try:
            return self._unsent.popleft()
        except IndexError:  # none left (another loop may take them too)
            return None

    def run_sync(
        self, call: Callable[[], Awaitable[object]], *, timeout: float = bridge.TIMEOUT_SECONDS
    ) -> object:
        """Run the coroutine ``call()`` (e.g. ``sweep``) from synchronous code; TimeoutError after
        ``timeout`` seconds (pass ``publish_timeout`` within a request)."""
        return bridge.run(call, self.layer_alias, timeout=timeout)

    async def _fan_out(self, namespace: str, room: str, packet: str) -> None:
        """In this process's loop its own sockets of the room get ``packet`` at once, and the layer
        carries it only to the other processes (in-memory: only if some other is bound to the room)."""
        group = room_group(namespace, room)
        if self.channel and asyncio.get_running_loop() is self._listening_loop:
            layer = self.layer
            groups = layer.groups if isinstance(layer, InMemoryChannelLayer) else None
            if groups is None or not set(groups.get(group, ())) <= {self.channel}:
                # Queued before this process's own deliveries: at the end of the turn the siblings' link
                # is written before its websockets, so that the other process delivers meanwhile.
                self._publish_soon(group, packet)
            await self._deliver_room(group, [packet])
            return
        self.room_messages["published"] += 1
        message = {"type": "eio.packets", "group": group, "packets": [packet]}
        layer = self.layer
        publish_soon = getattr(layer, "publish_soon", None)
        if publish_soon is None:
            await layer.group_send(group, message)
        else:
            publish_soon(group, message)

    def _publish_soon(self, group: str, packet: str) -> None:
        """Publish a room packet of this process's loop to the room's other processes at the end of this
        turn of the loop: the packets of one turn to one room in one message, without waiting for
        the broker's confirm (the frames are written in order)."""
        if self._outgoing and self._outgoing[-1][0] == group:
            self._outgoing[-1][1].append(packet)
        else:
            self._outgoing.append((group, [packet]))
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        outgoing, self._outgoing, self._flush_due = self._outgoing, [], False
        if self.siblings is not None:
            self.room_messages["to_siblings"] += len(outgoing)
            for group, packets in outgoing:
                self.siblings.send(group, packets)
        if self.settled and not self.peers:
            return  # no other process is known to be there: the siblings had them all
        layer = self.layer
        publish_soon = getattr(layer, "publish_soon", None)
        self.room_messages["published"] += len(outgoing)
        for group, packets in outgoing:
            message = {"type": "eio.packets", "group": group, "packets": packets}
            if self.settled:
                key = self._keys.get(group) or self._keys.setdefault(group, from_process(group, self.process))
            else:
                key = group
                # This process skips its copy, its siblings theirs.
                message.update(origin=self.channel, family=self.family)
            if publish_soon is None:
                keep(asyncio.get_running_loop().create_task(layer.group_send(key, message)))  # in memory
            else:
                publish_soon(key, message)  # in order, also while the broker is away

    async def _deliver_room(self, group: str, packets: list[str]) -> None:
        await self._caught_up()
        for sid in list(self.room_members.get(group, ())):
            if (session := self.sessions.get(sid)) is not None:
                await self._deliver(session, packets)

    # --- housekeeping ----------------------------------------------------------------------------------
    def ensure_housekeeping(self) -> None:
        """Start the periodic work on the running loop (once per loop): heartbeat round, pings."""
        loop = asyncio.get_running_loop()
        if self._housekeeping_loop is not loop:
            self._housekeeping_loop = loop
            keep(loop.create_task(self._housekeeping_forever()))
            keep(loop.create_task(self._ping_forever()))
            keep(loop.create_task(self._watch_broker()))
            if self.on_broker:
                # A process that beats is awaited by the rechecks of the others (``recheck``): it listens.
                keep(loop.create_task(self.listening()))

    def _database_back(self, **_kwargs: object) -> None:
        """Receiver of ``vantage6.database_outage.database_recovered``: the end of a database outage,
        seen by any thread of this process."""
        loop = self._housekeeping_loop
        if loop is not None and not loop.is_closed() and self.database_reconnected is not None:
            loop.call_soon_threadsafe(lambda: keep(loop.create_task(self._database_reconnected())))

    async def _database_reconnected(self) -> None:
        logger.warning("database reachable again")
        if self.database_reconnected is not None:
            await self.database_reconnected()

    async def _watch_broker(self) -> None:
        """Each time the layer's broker connection comes back, introduce this process again (a process
        that started meanwhile does not know it) and run ``layer_reconnected`` (a layer without a
        broker, such as the in-memory one, has nothing to watch)."""
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
            if previous is not None:
                logger.warning("channel layer reconnected to its broker")
                keep(asyncio.get_running_loop().create_task(self._introduce()))
                # A recheck published while the broker was away may be lost: all sessions are checked.
                self._start_recheck(None)
                try:
                    if self.layer_reconnected is not None:
                        await self.layer_reconnected()
                except Exception:
                    logger.exception("work after the channel layer reconnected failed")
            previous = connection
            with contextlib.suppress(Exception):  # closed by the broker or by a network error
                await connection.closed

    async def _housekeeping_forever(self) -> None:
        swept = time.monotonic() - self.ping_interval  # the first beat at once
        while True:
            if self._recheck_due:
                owners, self._recheck_due = self._recheck_due, set()
                self._start_recheck(owners)
            try:
                if time.monotonic() - swept >= self.ping_interval:
                    swept = time.monotonic()
                    await self.beat()
                    await self.sweep()
                if self.housekeeping is not None:
                    await self.housekeeping()
                outage.reached()
            except DatabaseError as exc:
                # An outage is answered 503 elsewhere; a traceback on every tick would bury the log.
                database_failed("socket housekeeping skipped", exc)
            except Exception:
                logger.exception("socket housekeeping failed")
            await asyncio.sleep(min(self.housekeeping_interval, self.ping_interval))

    async def _ping_forever(self) -> None:
        """One loop for all the sessions of this process: PINGs to websockets (the long-polling ones
        get theirs from their waiting GET), and the end of silent or expired sessions."""
        while True:
            await asyncio.sleep(self.ping_interval)
            for session in list(self.sessions.values()):
                try:
                    await self._check(session)
                except Exception:
                    logger.exception("pinging session %s failed", session.sid)
            now = time.monotonic()
            self.moved = {sid: moved for sid, moved in self.moved.items() if moved[1] > now}

    async def _check(self, session: Session) -> None:
        now = time.time()
        if session.expires_at is not None and now >= session.expires_at:
            await self.drop(session)  # an unauthenticated session's time is up
        elif session.sink is not None:
            if not session.pong_due:
                session.pong_due, session.ping_sent_at = True, now
                await session.sink.send_packets([p.encode_eio(p.PING)])
            elif now - session.ping_sent_at >= self.ping_timeout:
                await self.drop(session)
        elif session.waiter is None and time.monotonic() - session.active_at > (
            self.ping_interval + self.ping_timeout
        ):
            await self.disconnect(session)  # a long-polling client gone silent

    def ponged(self, session: Session) -> None:
        session.pong_due = False

    async def beat(self) -> None:
        """Record that this process is alive: one write whatever the number of its sessions (one beat
        at a time: a caller joins the one under way)."""
        if self.liveness is None:
            return
        beating = self._beating
        if beating is None or beating.done() or beating.get_loop() is not asyncio.get_running_loop():
            beating = self._beating = asyncio.get_running_loop().create_task(self._beat())
        await asyncio.shield(beating)

    async def _beat(self) -> None:
        """If another process took this one for dead meanwhile (it stalled), what it kept of its
        connections was ended there: its sessions end, and their clients connect again afresh. If it
        went ``beat_lapse`` without a beat, a change of rights may have been answered without waiting
        for it: its sessions are checked again before its beat counts (``_caught_up``)."""
        started = time.monotonic()  # the lapse is this process's own interval: no clock step moves it
        known = await database_sync_to_async(cast(Liveness, self.liveness).beat)(self.process)
        self._beat_failed_at = None
        if not known and self._beat_at is not None:
            logger.warning("this process was taken for dead; ending its %d sessions", len(self.sessions))
            for session in list(self.sessions.values()):
                await self.drop(session)
            if self.on_broker:  # the others forgot it
                keep(asyncio.get_running_loop().create_task(self._introduce()))
        elif self._lapsed():  # checked once the beat is written: a change that skipped it committed before
            logger.warning(
                "this process went %.0f s without a beat; checking its sessions again", self.beat_lapse
            )
            await self._derive_again([session for session in self.sessions.values() if session.owner])
        self._beat_at = started

    def _lapsed(self) -> bool:
        """Whether this process went ``beat_lapse`` without a beat (its loop or its database stalled):
        the others may have stopped waiting for its rechecks."""
        return self._beat_at is not None and time.monotonic() - self._beat_at > self.beat_lapse

    async def _caught_up(self) -> bool:
        """Before its sockets get a room packet or send an event: if this process lapsed, once it beat
        and checked them all again (a socket may hold a room it lost while the change did not wait).
        Whether it lapsed. While the beat fails, it is tried again at most every ``beat_retry`` seconds,
        and the first failure of an outage alone is logged."""
        if not self._lapsed() or asyncio.current_task() is self._beating:  # not the check's own moves
            return False
        failed_at = self._beat_failed_at
        if failed_at is not None and time.monotonic() - failed_at < self.beat_retry:
            return True
        try:
            await self.beat()
        except Exception as exc:  # the database away: served as before, nothing tells what changed
            if self._beat_failed_at is None:
                logger.warning("could not check the sessions of a process without a beat: %s", exc)
            self._beat_failed_at = time.monotonic()
        return True

    async def sweep(self) -> None:
        """Revoke the sessions of this process that ``verify`` finds (one call for all), and bury the
        processes that fell silent."""
        await self._verify([session for session in self.sessions.values() if session.owner])
        self._forget_full_allowances()
        if self.liveness is None:
            return
        # Silent longer than a dead session goes unnoticed, plus the bound of a GET forwarded to it and
        # held there: its long-polling clients have started over elsewhere, and their nodes are not
        # announced offline meanwhile.
        held_forward = self.ping_interval + self.forward_timeout
        age = 2 * self.ping_interval + self.ping_timeout + held_forward
        now = time.monotonic()
        self.stopped = {process: at for process, at in self.stopped.items() if now - at < 2 * age}
        # On a thread of their own: the calls of the clients' handshakes and admissions never wait for a
        # burial, which may wait for the rows of a process that stopped mid-transaction.
        for process in await sweeps.run(self.liveness.silent, age):
            if await sweeps.run(self.liveness.bury, process, age):
                logger.warning("server process %s fell silent; its connections ended", process)
                if self.on_broker:
                    await self._bye(process)

    async def _verify(self, sessions: list[Session]) -> None:
        if self.verify is None or not sessions:
            return
        for sid, event in (await database_sync_to_async(self.verify)(sessions)).items():
            if (session := self.sessions.get(sid)) is not None:
                await self.revoke(session, event)


def _forget(sids_of: dict[object, OrderedDict[str, None]], client: object, sid: str) -> None:
    if (sids := sids_of.get(client)) is not None:
        sids.pop(sid, None)
        if not sids:
            del sids_of[client]


_running: set[asyncio.Future] = set()


def _log_failure(future: asyncio.Future) -> None:
    """A done callback: the failure of layer work nobody waits for is logged (not the end of the layer)."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None and not isinstance(exc, asyncio.CancelledError | StopConsumer):
        logger.error("channel layer work failed", exc_info=exc)


def keep(task: asyncio.Future) -> None:
    """Hold a reference to a background task until it finishes."""
    _running.add(task)
    task.add_done_callback(_running.discard)
