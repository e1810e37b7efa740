"""Tasks, their runs (one per organization; a run's result is the same row) and algorithm ports."""

from __future__ import annotations

from django.db import models
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone


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


class TaskQuerySet(models.QuerySet):
    def with_status(self) -> TaskQuerySet:
        """Annotate the derived ``status`` and ``finished_at`` from the runs, in the database.

        Any failed run: the shared failure status, or "failed" when they differ; else the most
        advanced open status; else "completed" (also without runs). ``finished_at`` is the latest
        run end of a completed task. Each is one correlated subquery, so a page of tasks only
        aggregates the runs of its own rows and counting the tasks skips them.
        """
        runs = Run.objects.filter(task=OuterRef("pk")).order_by().values("task")
        failed = Q(status__in=FAILED_STATUSES)
        summary = runs.alias(
            failure_kinds=Count("status", filter=failed, distinct=True),
            failure=Min("status", filter=failed),
            open_rank=Max(
                Case(
                    *(When(status=status, then=Value(rank)) for status, rank in _OPEN_RANK.items()),
                    default=Value(0),
                    output_field=IntegerField(),
                )
            ),
        )
        status = summary.annotate(
            derived=Case(
                When(failure_kinds=1, then=F("failure")),
                When(failure_kinds__gt=1, then=Value(TaskStatus.FAILED.value)),
                *(When(open_rank=rank, then=Value(status.value)) for status, rank in _OPEN_RANK.items()),
                default=Value(TaskStatus.COMPLETED.value),
                output_field=CharField(),
            )
        ).values("derived")
        finished_at = summary.annotate(
            end=Case(
                When(Q(failure_kinds=0, open_rank=0), then=Max("finished_at")),
                default=None,
                output_field=DateTimeField(),
            )
        ).values("end")
        return self.annotate(
            status=Coalesce(Subquery(status), Value(TaskStatus.COMPLETED.value), output_field=CharField()),
            finished_at=Subquery(finished_at, output_field=DateTimeField()),
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
