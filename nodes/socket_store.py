"""The Socket.IO session store in the database, shared by every server instance."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import IntegrityError, transaction

from nodes.models import SocketPacket, SocketProcess, SocketRoom, SocketSession
from vantage6.socketio.store import POLLING, WEBSOCKET, Session, SessionStore

# Long-polling sessions of one client identity (the ``sub`` of its handshake's token) that have not
# connected a namespace yet: a loop of handshakes with a valid token ends its own oldest ones.
MAX_UNCONNECTED_SESSIONS = 20


def _moment(epoch: float) -> datetime:
    # Naive UTC, as every timestamp of the server (USE_TZ is off).
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _queue(rows: list[SocketPacket]) -> None:
    """Store packets; those of a session that ended meanwhile are dropped with it."""
    try:
        with transaction.atomic():
            SocketPacket.objects.bulk_create(rows)
    except IntegrityError:
        alive = set(
            SocketSession.objects.filter(sid__in={row.session_id for row in rows}).values_list(
                "sid", flat=True
            )
        )
        try:
            with transaction.atomic():
                SocketPacket.objects.bulk_create([row for row in rows if row.session_id in alive])
        except IntegrityError:
            pass  # another one ended in between: its packets have nobody to go to


def _session(row: SocketSession) -> Session:
    return Session(
        sid=row.sid,
        transport=row.transport,
        auth=row.auth,
        namespaces=row.namespaces,
        owner=row.owner,
        ping_sent_at=_epoch(row.ping_sent_at),
        process=row.process,
    )


class DatabaseSessionStore(SessionStore):
    def create(self, session: Session) -> None:
        now = _now()
        SocketSession.objects.create(
            sid=session.sid,
            transport=session.transport,
            auth=session.auth,
            namespaces=session.namespaces,
            owner=session.owner,
            process=session.process,
            created_at=now,
            last_activity=now,
            ping_sent_at=_moment(session.ping_sent_at) if session.ping_sent_at else now,
        )
        sub = session.auth.get("claims", {}).get("sub")
        if session.transport == POLLING and sub is not None:
            unconnected = SocketSession.objects.filter(
                auth__claims__sub=sub, transport=POLLING, namespaces={}
            )
            oldest = unconnected.order_by("-created_at", "-sid").values_list("sid", flat=True)
            if excess := list(oldest[MAX_UNCONNECTED_SESSIONS:]):
                # Nothing of them is anywhere else: no owner, no room, no websocket.
                SocketSession.objects.filter(sid__in=excess, namespaces={}).delete()

    def get(self, sid: str) -> Session | None:
        row = SocketSession.objects.filter(sid=sid).first()
        return None if row is None else _session(row)

    def save(self, session: Session) -> None:
        SocketSession.objects.filter(sid=session.sid).update(
            namespaces=session.namespaces, owner=session.owner
        )

    def set_transport(self, sid: str, transport: str, process: str = "") -> None:
        SocketSession.objects.filter(sid=sid).update(
            transport=transport, process=process, last_activity=_now()
        )

    def touch(self, sids: list[str], *, ping_sent: bool = False) -> None:
        now = _now()
        fields = {"last_activity": now, "ping_sent_at": now} if ping_sent else {"last_activity": now}
        for start in range(0, len(sids), 500):
            SocketSession.objects.filter(sid__in=sids[start : start + 500]).update(**fields)

    def claim(self, sid: str, *, idle_before: float | None = None) -> bool:
        rows = SocketSession.objects.filter(sid=sid)
        if idle_before is not None:
            rows = rows.filter(last_activity__lt=_moment(idle_before))
        # Rooms and queued packets go with it (cascade).
        return rows.delete()[0] > 0

    def idle(self, before: float) -> list[str]:
        unheld = SocketSession.objects.exclude(transport=WEBSOCKET, process__gt="")
        return list(unheld.filter(last_activity__lt=_moment(before)).values_list("sid", flat=True))

    def held(self, process: str, before: float) -> list[str]:
        # last_activity of a websocket session is when it started or upgraded.
        rows = SocketSession.objects.filter(process=process, last_activity__lt=_moment(before))
        return list(rows.values_list("sid", flat=True))

    def beat(self, process: str) -> bool:
        now = _now()
        if SocketProcess.objects.filter(id=process).update(beat_at=now):
            return True
        SocketProcess.objects.bulk_create([SocketProcess(id=process, beat_at=now)], ignore_conflicts=True)
        return False

    def silent_processes(self, before: float) -> list[str]:
        return list(SocketProcess.objects.filter(beat_at__lt=_moment(before)).values_list("id", flat=True))

    def bury(self, process: str, before: float) -> list[str]:
        with transaction.atomic():
            # The beat is checked in the same statement that forgets the process: one that was only
            # stalled and beat since it was found silent keeps its sessions.
            if not SocketProcess.objects.filter(id=process, beat_at__lt=_moment(before)).delete()[0]:
                return []
            return list(SocketSession.objects.filter(process=process).values_list("sid", flat=True))

    def join(self, sid: str, namespace: str, room: str) -> None:
        try:
            with transaction.atomic():
                SocketRoom.objects.get_or_create(session_id=sid, namespace=namespace, room=room)
        except IntegrityError:
            pass  # the session ended meanwhile

    def leave(self, sid: str, namespace: str, room: str) -> None:
        SocketRoom.objects.filter(session_id=sid, namespace=namespace, room=room).delete()

    def rooms(self, sid: str) -> list[tuple[str, str]]:
        return list(SocketRoom.objects.filter(session_id=sid).values_list("namespace", "room"))

    def push_to_room(self, namespace: str, room: str, packet: str) -> list[str]:
        sids = list(
            SocketRoom.objects.filter(namespace=namespace, room=room, session__transport=POLLING).values_list(
                "session_id", flat=True
            )
        )
        if sids:
            _queue([SocketPacket(session_id=sid, packet=packet) for sid in sids])
        return sids

    def push(self, sid: str, packets: list[str]) -> None:
        _queue([SocketPacket(session_id=sid, packet=packet) for packet in packets])

    def pop(self, sid: str) -> list[str]:
        with transaction.atomic():
            rows = list(
                SocketPacket.objects.select_for_update().filter(session_id=sid).values_list("id", "packet")
            )
            if rows:
                SocketPacket.objects.filter(id__in=[row_id for row_id, _ in rows]).delete()
        return [packet for _, packet in rows]

    def has_owner(self, owner: str, *, besides: str) -> bool:
        return SocketSession.objects.filter(owner=owner).exclude(sid=besides).exists()

    def owned(self, *, transport: str | None = None, owners: list[str] | None = None) -> list[Session]:
        rows = SocketSession.objects.exclude(owner="")
        if transport is not None:
            rows = rows.filter(transport=transport)
        if owners is not None:
            rows = rows.filter(owner__in=owners)
        return [_session(row) for row in rows]

    def release(self, sid: str, owner: str) -> bool:
        return SocketSession.objects.filter(sid=sid, owner=owner).update(owner="") > 0
