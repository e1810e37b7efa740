"""What a session is (``Session``, in the memory of its owning process) and what the database keeps of
the server processes (``Liveness``)."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any

POLLING, WEBSOCKET = "polling", "websocket"


class Session:
    """One Engine.IO session and the Socket.IO namespaces connected over it.

    It lives in the process that answered its handshake (or took over its websocket upgrade); slots
    and no per-session copy of the handshake keep an idle websocket small.
    """

    __slots__ = (
        "active_at",
        "address",
        "allowance",
        "auth",
        "expires_at",
        "namespaces",
        "outbox",
        "owner",
        "ping_sent_at",
        "pong_due",
        "queued",
        "received_at",
        "rooms",
        "sid",
        "sink",
        "transport",
        "waiter",
        "warned_at",
    )

    def __init__(
        self,
        sid: str,
        transport: str,
        auth: dict | None = None,
        *,
        owner: str = "",
        expires_at: float | None = None,
        address: str = "",
    ) -> None:
        self.sid = sid
        self.transport = transport
        # The client address that opened it: the only one whose requests it answers (a sid leaks in
        # polling URLs, and so into proxy and access logs).
        self.address = address
        # What the application kept of the handshake (see ``Server``'s ``authenticate``); never a secret.
        self.auth: dict = auth or {}
        # {namespace: {"sid": socket id, "state": application data}}
        self.namespaces: dict[str, dict] = {}
        # An application key of who is connected (e.g. "user:5").
        self.owner = owner
        self.ping_sent_at = time.time()
        self.pong_due = False  # a websocket's PING is unanswered
        self.active_at = time.monotonic()
        # Sessions of unauthenticated clients end at this time (epoch seconds).
        self.expires_at = expires_at
        # (namespace, room) pairs, few per session: a list is smaller than a set.
        self.rooms: list[tuple[str, str]] = []
        self.outbox: list[str] = []  # packets for the next long-polling GET
        self.queued = 0  # characters in the outbox
        self.sink: Any = None  # the websocket consumer, once upgraded
        self.waiter: Any = None  # the long-polling GET waiting for packets
        # The token bucket of the packets the client sends (see ``Server.admits``): full at first.
        self.allowance = math.inf
        self.received_at = 0.0
        self.warned_at = -math.inf  # when it was last logged for sending too many

    def handover(self) -> dict:
        """What another process needs to take the session over (it travels over the channel layer)."""
        return {
            "sid": self.sid,
            "transport": self.transport,
            "auth": self.auth,
            "namespaces": self.namespaces,
            "owner": self.owner,
            "expires_at": self.expires_at,
            "rooms": [list(room) for room in self.rooms],
            "outbox": self.outbox,
            "address": self.address,
        }

    @classmethod
    def taken_over(cls, state: dict) -> Session:
        session = cls(
            state["sid"], state["transport"], state["auth"], owner=state["owner"], address=state["address"]
        )
        session.expires_at = state["expires_at"]
        session.namespaces = state["namespaces"]
        session.rooms = [(namespace, room) for namespace, room in state["rooms"]]
        session.outbox = list(state["outbox"])
        session.queued = sum(len(packet) for packet in session.outbox)
        return session


class Liveness(ABC):
    """The liveness rows of the server processes, shared by all instances. Methods are synchronous
    (database-style); callers in an event loop run them in a thread."""

    @abstractmethod
    def beat(self, process: str) -> bool:
        """Record that ``process`` is alive; whether it was known alive already (False on its first
        beat, and after another process took it for dead)."""

    @abstractmethod
    def silent(self, age: float) -> list[str]:
        """Processes without a beat for ``age`` seconds (by one clock for all processes, the store's)."""

    @abstractmethod
    def bury(self, process: str, age: float) -> bool:
        """Forget ``process`` if it is still without a beat for ``age`` seconds (checked again in the
        same statement, for a process that was only stalled), with what the application kept of its
        connections; True for the one caller that did."""
