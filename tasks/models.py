"""Tasks, their runs (one per organization; a run's result is the same row) and algorithm ports."""

from __future__ import annotations

from django.db import models
from django.db.models import CharField, DateTimeField
from django.utils import timezone

from vantage6.api.sql import CorrelatedSQL


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    INITIALIZING = "initializing"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    START_FAILED = "start failed"
    NO_DOCKER_IMAGE = "non-existing Docker image"
    CRASHED = "crashed"
    KILLED = "killed by user"
    NOT_ALLOWED = "not allowed"
    UNKNOWN_ERROR = "unknown error"


OPEN_STATUSES = (TaskStatus.PENDING, TaskStatus.INITIALIZING, TaskStatus.ACTIVE)
FAILED_STATUSES = tuple(s for s in TaskStatus if s not in OPEN_STATUSES and s != TaskStatus.COMPLETED)


def is_finished(status: str) -> bool:
    """Completed or any failure status: the run (or task) will not run again."""
    return status not in OPEN_STATUSES


# Precedence of the open statuses in the derived task status: active > initializing > pending.
_OPEN_RANK = {TaskStatus.ACTIVE: 3, TaskStatus.INITIALIZING: 2, TaskStatus.PENDING: 1}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _run_summary_sql(connection, select: str) -> tuple[str, tuple]:
    """``SELECT <select> FROM run r WHERE r.task_id = <outer task>`` with the status aggregates named
    ``{failed}`` (the set of failure statuses) and ``{rank}`` (a run's open rank) in ``select``."""
    q = connection.ops.quote_name
    failed = f"r.{q('status')} IN ({', '.join(_literal(s.value) for s in FAILED_STATUSES)})"
    rank = " ".join(f"WHEN {_literal(s.value)} THEN {n}" for s, n in _OPEN_RANK.items())
    select = select.format(
        failed=failed, rank=f"CASE r.{q('status')} {rank} ELSE 0 END", status=f"r.{q('status')}"
    )
    return (
        f"SELECT {select} FROM {q(Run._meta.db_table)} r WHERE r.{q(Run.task.field.column)} = {{outer}}",
        (),
    )


def _status_sql(connection) -> tuple[str, tuple]:
    # Any failed run: the shared failure status, or "failed" when they differ; else the most
    # advanced open status; else "completed" (also without runs: the aggregates give one row).
    kinds = "COUNT(DISTINCT CASE WHEN {failed} THEN {status} END)"
    open_status = " ".join(
        f"WHEN MAX({{rank}}) = {n} THEN {_literal(s.value)}" for s, n in _OPEN_RANK.items()
    )
    return _run_summary_sql(
        connection,
        f"CASE WHEN {kinds} = 1 THEN MIN(CASE WHEN {{failed}} THEN {{status}} END) "
        f"WHEN {kinds} > 1 THEN {_literal(TaskStatus.FAILED.value)} {open_status} "
        f"ELSE {_literal(TaskStatus.COMPLETED.value)} END",
    )


def _finished_at_sql(connection) -> tuple[str, tuple]:
    # The latest run end, only when every run completed.
    q = connection.ops.quote_name
    return _run_summary_sql(
        connection,
        f"CASE WHEN COUNT(CASE WHEN {{failed}} THEN 1 END) = 0 AND MAX({{rank}}) = 0 "
        f"THEN MAX(r.{q('finished_at')}) END",
    )


class TaskQuerySet(models.QuerySet):
    def with_status(self) -> TaskQuerySet:
        """Annotate the derived ``status`` and ``finished_at`` from the runs, in the database.

        Any failed run: the shared failure status, or "failed" when they differ; else the most
        advanced open status; else "completed" (also without runs). ``finished_at`` is the latest
        run end of a completed task. Each is one correlated subquery (SQL written once), so a page
        of tasks only aggregates the runs of its own rows, counting the tasks skips them, and the
        task list can still filter on the status.
        """
        return self.annotate(
            status=CorrelatedSQL(_status_sql, output_field=CharField()),
            finished_at=CorrelatedSQL(_finished_at_sql, output_field=DateTimeField()),
        )


class Task(models.Model):
    """A computation request; ``status`` and ``finished_at`` come from ``Task.objects.with_status()``."""

    name = models.CharField(max_length=128, blank=True, default="")
    description = models.CharField(max_length=1024, blank=True, default="")
    image = models.CharField(max_length=512)
    collaboration = models.ForeignKey(
        "collaborations.Collaboration", on_delete=models.CASCADE, related_name="tasks"
    )
    study = models.ForeignKey(
        "collaborations.Study", null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    job_id = models.IntegerField(db_index=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    init_org = models.ForeignKey(
        "collaborations.Organization", on_delete=models.CASCADE, related_name="initiated_tasks"
    )
    init_user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="created_tasks"
    )
    created_at = models.DateTimeField(default=timezone.now)
    algorithm_store = models.ForeignKey(
        "collaborations.AlgorithmStore",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
    )

    objects = TaskQuerySet.as_manager()

    class Meta:
        db_table = "task"

    def __str__(self) -> str:
        return f"task {self.pk} ({self.name})"


class TaskDatabase(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="databases")
    database = models.CharField(max_length=256)  # the database label
    parameters = models.TextField(default="{}")  # compact JSON of the other keys of the request entry

    class Meta:
        db_table = "taskdatabase"
        ordering = ["id"]


class Run(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    organization = models.ForeignKey(
        "collaborations.Organization", on_delete=models.CASCADE, related_name="runs"
    )
    input = models.TextField(null=True, blank=True)
    result = models.TextField(null=True, blank=True)
    assigned_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=32, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    log = models.TextField(null=True, blank=True)
    cleanup_at = models.DateTimeField(null=True, blank=True)
    blob_storage_used = models.BooleanField(default=False)

    class Meta:
        db_table = "run"

    def __str__(self) -> str:
        return f"run {self.pk} of task {self.task_id}"

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None or is_finished(self.status)


class AlgorithmPort(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="ports")
    port = models.IntegerField()
    label = models.CharField(max_length=128, null=True, blank=True)

    class Meta:
        db_table = "algorithmport"


class PeriodicJob(models.Model):
    """When a cluster-wide periodic job last ran: every server process claims the job through its row,
    so that one of them runs it per period."""

    name = models.CharField(max_length=64, primary_key=True)
    last_run_at = models.DateTimeField()

    class Meta:
        db_table = "periodic_job"

    def __str__(self) -> str:
        return f"{self.name} (last run {self.last_run_at})"
