"""Tasks, their runs (one per organization; a run's result is the same row) and algorithm ports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import models
from django.utils import timezone

from vantage6.db.sizes import bytes_of


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


# Precedence of the open statuses in a task's status: active > initializing > pending.
_OPEN_ORDER = (TaskStatus.ACTIVE, TaskStatus.INITIALIZING, TaskStatus.PENDING)


def task_status(runs: Iterable[tuple[str, datetime | None]]) -> tuple[str, datetime | None]:
    """A task's ``status`` and ``finished_at`` from the ``(status, finished_at)`` of its runs.

    Any failed run: the shared failure status, or "failed" when they differ; else the most advanced
    open status; else "completed" (also without runs), with the latest run end as ``finished_at``.
    """
    runs = list(runs)
    statuses = {status for status, _ in runs}
    failures = statuses.intersection(FAILED_STATUSES)
    if failures:
        return (failures.pop() if len(failures) == 1 else TaskStatus.FAILED), None
    for status in _OPEN_ORDER:
        if status in statuses:
            return status, None
    return TaskStatus.COMPLETED, max((end for _, end in runs if end is not None), default=None)


class Task(models.Model):
    """A computation request. ``status`` and ``finished_at`` follow its runs (``task_status``): the
    services that write runs keep them, so that reads and the ``?status=`` filter use plain columns."""

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
    # A task without runs counts as completed.
    status = models.CharField(
        max_length=32, choices=TaskStatus.choices, default=TaskStatus.COMPLETED, db_index=True
    )
    finished_at = models.DateTimeField(null=True, blank=True)

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


# A run's fields of any size (up to a request body each), which bound a page of runs or tasks with runs.
RUN_LARGE_FIELDS = ("input", "result", "log")


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
        # The bytes a run shows in a page of runs, and of results: a list finds its rows too large for a
        # page (``vantage6.api.pagination``) in these, without a pass over its small ones.
        indexes = [
            models.Index(bytes_of(*RUN_LARGE_FIELDS), name="run_large_bytes"),
            models.Index(bytes_of("result"), name="run_result_bytes"),
        ]

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


class Blob(models.Model):
    """A blob in the large result store and its size, counted against its organization's bound."""

    name = models.CharField(max_length=36, primary_key=True)
    organization_id = models.IntegerField(db_index=True)  # only summed: no relation needed
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "blob"


class PeriodicJob(models.Model):
    """When a cluster-wide periodic job last ran: every server process claims the job through its row,
    so that one of them runs it per period."""

    name = models.CharField(max_length=64, primary_key=True)
    last_run_at = models.DateTimeField()

    class Meta:
        db_table = "periodic_job"

    def __str__(self) -> str:
        return f"{self.name} (last run {self.last_run_at})"
