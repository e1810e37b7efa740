"""The liveness rows of the Socket.IO server processes, and what a dead process leaves behind."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import TypeVar

from django.db import OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now

from accounts.models import Authenticatable, AuthStatus
from accounts.permissions import memberships
from nodes.models import Node, NodeConfig, NodeMetrics, SocketConnection, SocketProcess
from vantage6.socketio.store import Liveness

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a statement of the sweeps waits for a row lock on PostgreSQL. An ordinary transaction holds its
# rows for milliseconds; one that holds them longer belongs to a process stopped or dying mid-transaction,
# and a sweep waiting for it would hold the rows it locked already, so the sweep gives up and its next
# round tries again.
ROW_WAIT_MS = 1000
_LOCK_NOT_AVAILABLE = "55P03"


def _bound_row_waits() -> None:
    """In the transaction under way: a statement waiting longer than ``ROW_WAIT_MS`` for a row lock fails
    (see ``row_wait_ended``). SQLite's one write lock is waited for as any writer waits for it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{ROW_WAIT_MS}ms"])


def row_wait_ended(exc: OperationalError) -> bool:
    """Whether ``exc`` ended a statement that waited ``ROW_WAIT_MS`` for a row lock."""
    return getattr(exc.__cause__, "pgcode", None) == _LOCK_NOT_AVAILABLE


def next_round_if_rows_held(sweep: Callable[[], T], otherwise: T, postponed: str, *args: object) -> T:
    """``sweep()``, or, when one of its statements waited ``ROW_WAIT_MS`` for a row lock (``row_wait_ended``;
    its transaction changed nothing), ``otherwise``, with the warning ``postponed`` (a log format for
    ``args``): the sweep's next round tries again. Any other error is raised."""
    try:
        return sweep()
    except OperationalError as exc:
        if not row_wait_ended(exc):
            raise
        logger.warning(postponed, *args)
        return otherwise


def _ago(seconds: float) -> CombinedExpression:
    """The database's time ``seconds`` ago. Beats are written and judged by the database's clock alone:
    judged by the clock of the process that asks, a process whose own clock runs behind would look
    silent (skipped by changes of rights, buried) while it beats."""
    return Now() - Value(timedelta(seconds=seconds))


NODE_NOTICE_FIELDS = ("id", "name", "organization_id", "collaboration_id")


def went_silent(identities: QuerySet[Authenticatable]) -> list[dict]:
    """Mark offline those of ``identities`` that are online; the nodes among them (``NODE_NOTICE_FIELDS``,
    and ``member``: whether their organization is in their collaboration, whose rooms they then hold).

    Each is reported by one caller only, whichever marks it: the rows are locked as they are read, and a
    concurrent caller (the sweep or burial of another process) finds them offline once it may read them.
    A row locked elsewhere for longer than ``ROW_WAIT_MS`` fails the call (``row_wait_ended``), which
    changes nothing.
    """
    with transaction.atomic():
        _bound_row_waits()
        online = identities.filter(status=AuthStatus.ONLINE).select_for_update()
        ids = list(online.values_list("pk", flat=True))
        if not ids:
            return []
        Authenticatable.objects.filter(pk__in=ids).update(status=AuthStatus.OFFLINE)
        member = memberships().filter(
            collaboration_id=OuterRef("collaboration_id"), organization_id=OuterRef("organization_id")
        )
        nodes = Node.objects.filter(pk__in=ids).annotate(member=Exists(member))
        return list(nodes.values(*NODE_NOTICE_FIELDS, "member"))


class DatabaseLiveness(Liveness):
    """``process_lost`` hears, after the commit, that a process was buried, with the nodes (id, name,
    organization_id, collaboration_id) its burial marked offline (the heartbeat sweep may have been
    first)."""

    def __init__(self, process_lost: Callable[[list[dict]], None]) -> None:
        self.process_lost = process_lost

    def beat(self, process: str) -> bool:
        if SocketProcess.objects.filter(id=process).update(beat_at=Now()):
            return True
        SocketProcess.objects.bulk_create([SocketProcess(id=process, beat_at=Now())], ignore_conflicts=True)
        return False

    def silent(self, age: float) -> list[str]:
        return list(SocketProcess.objects.filter(beat_at__lt=_ago(age)).values_list("id", flat=True))

    def bury(self, process: str, age: float) -> bool:
        return next_round_if_rows_held(
            lambda: self._bury(process, age),
            False,
            "burial of server process %s waits for a row held elsewhere; tried again",
            process,
        )

    def _bury(self, process: str, age: float) -> bool:
        with transaction.atomic():
            _bound_row_waits()
            # The beat is checked in the same statement that forgets the process: one that was only
            # stalled and beat since it was found silent keeps its connections.
            if not SocketProcess.objects.filter(id=process, beat_at__lt=_ago(age)).delete()[0]:
                return False
            held = SocketConnection.objects.filter(process=process).values("identity_id")
            nodes = went_silent(Authenticatable.objects.filter(pk__in=held))
            NodeConfig.objects.filter(node_id__in=held).delete()
            NodeMetrics.objects.filter(node_id__in=held).delete()
            SocketConnection.objects.filter(process=process).delete()
            transaction.on_commit(lambda: self.process_lost(nodes))
        return True


def live_processes(lapse: float) -> list[str]:
    """The server processes that beat within the last ``lapse`` seconds (``Server.beat_lapse``): those a
    change of rights waits for. One silent longer is dead or stuck, and checks its sockets itself before
    they act again (``Server._caught_up``)."""
    return list(SocketProcess.objects.filter(beat_at__gte=_ago(lapse)).values_list("id", flat=True))


def restore_rows(process: str, held: dict[int, str], reports: dict[int, dict]) -> list[int]:
    """The identities of ``held`` (id: generation of one of their sockets on server ``process``) that have
    no connection row get one, held by ``process``, and are online: the row went with a dead process that
    held their newest socket, or with the disconnect of that socket on another process, and without it
    no change of rights finds the sockets left here. A node among them has what its socket reported again
    (``reports``: id: its ``config``, ``(key, value)`` rows, and its ``metrics``, the fields of its
    ``NodeMetrics``), which went with the row. One query when none lacks a row; the ids of those that got
    theirs from this call."""
    rowless = Authenticatable.objects.filter(pk__in=held, socket_connection__isnull=True)
    lacking = list(rowless.values_list("pk", flat=True))
    if not lacking:
        return []
    with transaction.atomic():
        rows = [SocketConnection(identity_id=pk, generation=held[pk], process=process) for pk in lacking]
        SocketConnection.objects.bulk_create(rows, ignore_conflicts=True)  # one may have connected since
        # Not those: that connect marks its identity online, and its node reports its configuration.
        ours = SocketConnection.objects.filter(identity_id__in=lacking, process=process)
        restored = [
            pk for pk, generation in ours.values_list("identity_id", "generation") if generation == held[pk]
        ]
        Authenticatable.objects.filter(pk__in=restored).update(status=AuthStatus.ONLINE)
        told = {pk: reports.get(pk, {}) for pk in restored}
        if configs := {pk: report["config"] for pk, report in told.items() if "config" in report}:
            NodeConfig.objects.filter(node_id__in=configs).delete()
            NodeConfig.objects.bulk_create(
                NodeConfig(node_id=pk, key=key, value=value)
                for pk, rows in configs.items()
                for key, value in rows
            )
        if metrics := {pk: report["metrics"] for pk, report in told.items() if "metrics" in report}:
            NodeMetrics.objects.filter(node_id__in=metrics).delete()
            NodeMetrics.objects.bulk_create(
                NodeMetrics(node_id=pk, **fields) for pk, fields in metrics.items()
            )
    return restored


def back_to_stopped(identity_id: int, generation: str, stopped: Collection[str]) -> bool:
    """If the connection of ``generation`` is on record and replaced one held by a process of ``stopped``
    (they stopped gracefully, dropping their sockets without marking them offline) that is not buried
    yet, that one is on record again: whether it is. Its burial marks the identity offline unless a
    connect replaced it again by then. The process's liveness row is locked first, as its burial does:
    a process buried meanwhile holds no connection any longer."""
    with transaction.atomic():
        replaced = (
            SocketConnection.objects.filter(
                identity_id=identity_id, generation=generation, replaced_process__in=stopped
            )
            .exclude(replaced_generation__isnull=True)
            .exclude(replaced_generation="")
            .values_list("replaced_generation", "replaced_process")
            .first()
        )
        if replaced is None or not SocketProcess.objects.select_for_update().filter(id=replaced[1]).exists():
            return False
        generation_was, process_was = replaced
        on_record = SocketConnection.objects.filter(
            identity_id=identity_id,
            generation=generation,
            replaced_generation=generation_was,
            replaced_process=process_was,
        )
        back = {"generation": generation_was, "process": process_was}
        return bool(on_record.update(**back, replaced_generation=None, replaced_process=""))
