"""Tasks, their runs (one per organization; a run's result is the same row) and algorithm ports."""

from __future__ import annotations

from django.db import models
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


class Task(models.Model):
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


class AlgorithmPort(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="ports")
    port = models.IntegerField()
    label = models.CharField(max_length=128, null=True, blank=True)

    class Meta:
        db_table = "algorithmport"
