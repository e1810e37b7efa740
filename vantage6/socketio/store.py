"""Where sessions live: a store every server instance can reach (see ``SessionStore``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

POLLING, WEBSOCKET = "polling", "websocket"


@dataclass
class Session:
    """One Engine.IO session and the Socket.IO namespaces connected over it."""

    sid: str
    transport: str
    # What the application kept of the handshake (see ``Server``'s ``authenticate``); never a secret.
    auth: dict = field(default_factory=dict)
    # {namespace: {"sid": socket id, "state": application data}}
    namespaces: dict[str, dict] = field(default_factory=dict)
    # An application key of who is connected (e.g. "user:5"), to find the other sessions of one client.
    owner: str = ""
    ping_sent_at: float | None = None
    # Sessions of unauthenticated clients end at this time (epoch seconds); see ``local``.
    expires_at: float | None = None
    # The server process holding its websocket (none for long-polling: any process serves it).
    process: str = ""


class SessionStore(ABC):
    """Shared state of the sessions. Methods are synchronous (database-style); callers in an event
    loop run them in a thread."""

    @abstractmethod
    def create(self, session: Session) -> None: ...

    @abstractmethod
    def get(self, sid: str) -> Session | None: ...

    @abstractmethod
    def save(self, session: Session) -> None:
        """Store the namespaces and the owner of a session."""

    @abstractmethod
    def set_transport(self, sid: str, transport: str, process: str = "") -> None: ...

    @abstractmethod
    def touch(self, sids: list[str], *, ping_sent: bool = False) -> None:
        """Record activity of live sessions (and optionally that a PING was just sent)."""

    @abstractmethod
    def claim(self, sid: str, *, idle_before: float | None = None) -> bool:
        """Delete a session (only if idle since ``idle_before`` when given); True for the one caller
        that deleted it, so that disconnect handling runs once across instances."""

    @abstractmethod
    def idle(self, before: float) -> list[str]:
        """Sessions no process holds (long-polling) without activity since ``before``."""

    @abstractmethod
    def held(self, process: str, before: float) -> list[str]:
        """Websocket sessions ``process`` held since before ``before`` (to find those it lost)."""

    @abstractmethod
    def beat(self, process: str) -> bool:
        """Record that ``process`` is alive; whether it was known alive already (False on its first
        beat, and after another process took it for dead)."""

    @abstractmethod
    def silent_processes(self, before: float) -> list[str]:
        """Processes without a beat since ``before``."""

    @abstractmethod
    def bury(self, process: str, before: float) -> list[str]:
        """Forget ``process`` if it is still silent since ``before`` (checked again, for a process
        that was only stalled); the sids of the sessions it held, or none if it beat meanwhile."""

    @abstractmethod
    def join(self, sid: str, namespace: str, room: str) -> None: ...

    @abstractmethod
    def leave(self, sid: str, namespace: str, room: str) -> None: ...

    @abstractmethod
    def rooms(self, sid: str) -> list[tuple[str, str]]:
        """(namespace, room) pairs the session is in."""

    @abstractmethod
    def push_to_room(self, namespace: str, room: str, packet: str) -> list[str]:
        """Queue ``packet`` for every long-polling session in the room; their sids."""

    @abstractmethod
    def push(self, sid: str, packets: list[str]) -> None:
        """Queue packets for the next long-polling GET of a session."""

    @abstractmethod
    def pop(self, sid: str) -> list[str]:
        """Take the queued packets of a session, oldest first."""

    @abstractmethod
    def has_owner(self, owner: str, *, besides: str) -> bool:
        """Whether ``owner`` has a session other than ``besides``."""

    @abstractmethod
    def owned(self, *, transport: str | None = None, owners: list[str] | None = None) -> list[Session]:
        """Sessions with an owner (one of ``owners`` when given), of ``transport`` when given."""

    @abstractmethod
    def release(self, sid: str, owner: str) -> bool:
        """Clear the owner of a session if it is ``owner``; True for the one caller that did."""
