"""Sessions of clients that did not authenticate at the handshake: in this process's memory only.

An anonymous handshake writes nothing to the shared store, so a loop of them fills no table. At most
``capacity`` such sessions are kept (a new one drops the oldest), each until ``lifetime`` seconds after
its handshake, with at most ``max_queued`` characters of packets waiting for it.

Without sticky routing the next request of such a session may land on another instance. Its sid is
therefore signed and self-contained (transport, handshake time, the application's ``auth``), and any
instance sharing the secret takes the session over on its first request for it. The websocket upgrade
of the official node, which follows its handshake at once and then carries everything, thus works
wherever it lands. Long-polling requests that alternate between instances work too, only later: packets
wait on the instance that queued them until a GET lands there (it returns at least every ping interval).
A dropped session's sid is taken over afresh, without its namespaces and packets, until its lifetime
ends. An expired or forged sid gets Engine.IO's "Session ID unknown" (400, code 1), on which clients
start over with a new handshake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from vantage6.socketio.store import POLLING, WEBSOCKET, Session, SessionStore

SIGNED = "."  # only in signed sids: those of the shared store are URL-safe base64
_TRANSPORTS = (POLLING, WEBSOCKET)
_HEAD = struct.Struct(">BI")  # transport, handshake time
_NONCE_BYTES = 9
_MAC_BYTES = 16
# A sid is part of a channel-layer group name, which must stay under 100 characters.
MAX_SID_LENGTH = 90


def is_local(sid: str) -> bool:
    return SIGNED in sid


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class _Entry:
    session: Session
    queue: list[str] = field(default_factory=list)
    size: int = 0  # characters queued


class LocalSessions:
    """The unauthenticated sessions of this process (see the module)."""

    def __init__(self, *, secret: bytes, capacity: int, lifetime: float, max_queued: int) -> None:
        self._key = hmac.new(secret, b"engine.io unauthenticated sid", hashlib.sha256).digest()
        self.capacity = capacity
        self.lifetime = lifetime
        self.max_queued = max_queued
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES])

    def open(self, transport: str, auth: dict) -> Session:
        """A new session, with a signed sid."""
        now = time.time()
        head = _HEAD.pack(_TRANSPORTS.index(transport), int(now)) + secrets.token_bytes(_NONCE_BYTES)
        body = _b64(head + json.dumps(auth, separators=(",", ":")).encode())
        sid = f"{body}{SIGNED}{self._mac(body)}"
        if len(sid) > MAX_SID_LENGTH:
            raise ValueError("the auth of an unauthenticated session must be small")
        expires_at = int(now) + self.lifetime
        return self._keep(Session(sid, transport, auth, ping_sent_at=now, expires_at=expires_at))

    def _take_over(self, sid: str, now: float) -> Session | None:
        """The session of a sid signed by an instance sharing the secret, while it lasts."""
        body, _, mac = sid.partition(SIGNED)
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        data = _unb64(body)
        kind, created = _HEAD.unpack_from(data)
        auth = json.loads(data[_HEAD.size + _NONCE_BYTES :])
        expires_at = created + self.lifetime
        if not now < expires_at <= now + 2 * self.lifetime:  # over, or from a clock far ahead
            return None
        return self._keep(Session(sid, _TRANSPORTS[kind], auth, ping_sent_at=now, expires_at=expires_at))

    def _keep(self, session: Session) -> Session:
        with self._lock:
            while self._entries and len(self._entries) >= self.capacity:
                self._entries.popitem(last=False)
            self._entries[session.sid] = _Entry(session)
        return session

    def get(self, sid: str) -> Session | None:
        now = time.time()
        entry = self._entries.get(sid)
        if entry is None:
            return self._take_over(sid, now)
        if entry.session.expires_at is not None and entry.session.expires_at <= now:
            self.claim(sid)
            return None
        return entry.session

    def set_transport(self, sid: str, transport: str) -> None:
        if (entry := self._entries.get(sid)) is not None:
            entry.session.transport = transport

    def touch(self, sids: list[str], *, ping_sent: bool = False) -> None:
        if ping_sent:
            for sid in sids:
                if (entry := self._entries.get(sid)) is not None:
                    entry.session.ping_sent_at = time.time()

    def claim(self, sid: str) -> bool:
        with self._lock:
            return self._entries.pop(sid, None) is not None

    def push(self, sid: str, packets: list[str]) -> None:
        with self._lock:
            entry = self._entries.get(sid)
            if entry is None:
                return
            entry.size += sum(len(packet) for packet in packets)
            if entry.size > self.max_queued:
                del self._entries[sid]  # a client that does not fetch its packets loses its session
                return
            entry.queue += packets

    def pop(self, sid: str) -> list[str]:
        with self._lock:
            entry = self._entries.get(sid)
            if entry is None:
                return []
            packets, entry.queue, entry.size = entry.queue, [], 0
            return packets


class Sessions(SessionStore):
    """Authenticated clients' sessions in the shared store, the others' in this process (``local``)."""

    def __init__(self, shared: SessionStore, local: LocalSessions) -> None:
        self.shared = shared
        self.local = local

    def create(self, session: Session) -> None:
        self.shared.create(session)

    def get(self, sid: str) -> Session | None:
        return self.local.get(sid) if is_local(sid) else self.shared.get(sid)

    def save(self, session: Session) -> None:
        if not is_local(session.sid):  # a local session is the very object kept
            self.shared.save(session)

    def set_transport(self, sid: str, transport: str, process: str = "") -> None:
        if is_local(sid):
            self.local.set_transport(sid, transport)
        else:
            self.shared.set_transport(sid, transport, process)

    def touch(self, sids: list[str], *, ping_sent: bool = False) -> None:
        self.local.touch([sid for sid in sids if is_local(sid)], ping_sent=ping_sent)
        self.shared.touch([sid for sid in sids if not is_local(sid)], ping_sent=ping_sent)

    def claim(self, sid: str, *, idle_before: float | None = None) -> bool:
        return self.local.claim(sid) if is_local(sid) else self.shared.claim(sid, idle_before=idle_before)

    def idle(self, before: float) -> list[str]:
        return self.shared.idle(before)  # local sessions end at their expiry instead

    def held(self, process: str, before: float) -> list[str]:
        return self.shared.held(process, before)

    def beat(self, process: str) -> bool:
        return self.shared.beat(process)

    def silent_processes(self, before: float) -> list[str]:
        return self.shared.silent_processes(before)

    def bury(self, process: str, before: float) -> list[str]:
        return self.shared.bury(process, before)

    def join(self, sid: str, namespace: str, room: str) -> None:
        if is_local(sid):
            # Rooms span instances; a session only this process knows cannot be in one.
            raise ValueError("an unauthenticated session cannot join a room")
        self.shared.join(sid, namespace, room)

    def leave(self, sid: str, namespace: str, room: str) -> None:
        if not is_local(sid):
            self.shared.leave(sid, namespace, room)

    def rooms(self, sid: str) -> list[tuple[str, str]]:
        return [] if is_local(sid) else self.shared.rooms(sid)

    def push_to_room(self, namespace: str, room: str, packet: str) -> list[str]:
        return self.shared.push_to_room(namespace, room, packet)

    def push(self, sid: str, packets: list[str]) -> None:
        (self.local if is_local(sid) else self.shared).push(sid, packets)

    def pop(self, sid: str) -> list[str]:
        return self.local.pop(sid) if is_local(sid) else self.shared.pop(sid)

    def has_owner(self, owner: str, *, besides: str) -> bool:
        return self.shared.has_owner(owner, besides=besides)

    def owned(self, *, transport: str | None = None, owners: list[str] | None = None) -> list[Session]:
        return self.shared.owned(transport=transport, owners=owners)  # local sessions have no owner

    def release(self, sid: str, owner: str) -> bool:
        return not is_local(sid) and self.shared.release(sid, owner)
