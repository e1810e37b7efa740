"""A kill whose caller its own statement checks (PostgreSQL) takes its task family's lock only for a
caller that check lets through: a token no longer valid neither waits for the lock nor holds it."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.models import AuditEntry, LoginSession, User
from collaborations.models import Organization
from tasks.models import Run, Task
from tests.conftest import requires_services
from tests.factories import bearer, make_run, make_task, make_user

pytestmark = [requires_services("postgres"), pytest.mark.django_db(transaction=True)]


class LockHolder(threading.Thread):
    """Holds the row lock of a task on a connection of its own until ``done``, and notes whether
    another session of this database waited for a lock meanwhile (the holder then lets it go)."""

    def __init__(self, task_id: int) -> None:
        super().__init__(daemon=True)
        self.task_id = task_id
        self.locked, self.done = threading.Event(), threading.Event()
        self.waiter_seen = False

    def run(self) -> None:
        try:
            with transaction.atomic():
                Task.objects.select_for_update().filter(pk=self.task_id).get()
                self.locked.set()
                deadline = time.monotonic() + 30
                while not self.done.is_set() and time.monotonic() < deadline:
                    if self._someone_waits():
                        self.waiter_seen = True
                        return
                    time.sleep(0.02)
        finally:
            self.locked.set()
            connections.close_all()

    @staticmethod
    def _someone_waits() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone() is not None


def kill(api, headers: dict, task: Task):
    return api.post("/api/kill/task", {"id": task.pk}, format="json", **headers)


def open_task(world) -> Task:
    """A task of AB with an active run: one the usual kill ends."""
    task = make_task(world.collab_ab, world.org_a)
    make_run(task, world.org_a, status="active")
    return task


def root_after_a_kill(api, world, organization: Organization) -> tuple[User, dict]:
    """A Root user of ``organization`` (a global right: its kill is checked by its own statement) and its
    headers, once a kill of theirs took the statement's path, as a usual caller's does."""
    root = make_user(organization, "Root")
    headers = bearer(root)
    assert kill(api, headers, open_task(world)).status_code == 200
    return root, headers


def test_a_kill_by_a_token_no_longer_valid_takes_no_lock_and_writes_nothing(api, world):
    root, headers = root_after_a_kill(api, world, world.org_a)
    task = open_task(world)
    LoginSession.objects.filter(identity_id=root.pk).update(revoked_at=timezone.now())
    before = AuditEntry.objects.count()

    holder = LockHolder(task.pk)
    holder.start()
    try:
        assert holder.locked.wait(10)
        response = kill(api, headers, task)
    finally:
        holder.done.set()
        holder.join(40)

    assert response.status_code == 401, response.content
    assert not holder.waiter_seen, "the refused kill waited for the task's lock"
    assert list(Run.objects.filter(task=task).values_list("status", flat=True)) == ["active"]
    assert AuditEntry.objects.count() == before


def someone_waits_for_a_lock() -> bool:
    """Whether a session of this database waits for a lock, asked in a transaction of its own: the
    server shows a transaction the sessions' activity as it was at its first look, until it ends."""
    answer: list[bool] = []

    def ask() -> None:
        try:
            answer.append(LockHolder._someone_waits())
        finally:
            connections.close_all()

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(10)
    return bool(answer and answer[0])


class Waiting(threading.Thread):
    """A kill sent on a connection of its own, to wait for a lock another session holds."""

    def __init__(self, api, headers: dict, task: Task) -> None:
        super().__init__(daemon=True)
        self.api, self.headers, self.task = api, headers, task
        self.response = None

    def run(self) -> None:
        try:
            self.response = kill(self.api, self.headers, self.task)
        finally:
            connections.close_all()


def test_a_right_taken_away_while_the_kill_waits_for_the_lock_is_honoured(api, world):
    # The lock's statement checks the caller before it waits; the write's statement, with a snapshot
    # taken once the lock is granted, checks it again: a right taken away meanwhile stops the kill.
    # C is no member of the task's collaboration: the global right alone lets the kill through.
    root, headers = root_after_a_kill(api, world, world.org_c)
    task = open_task(world)
    before = AuditEntry.objects.count()

    with transaction.atomic():
        Task.objects.select_for_update().filter(pk=task.pk).get()
        waiting = Waiting(api, headers, task)
        waiting.start()
        deadline = time.monotonic() + 20
        while not someone_waits_for_a_lock():
            assert time.monotonic() < deadline, "the kill never waited for the task's lock"
            time.sleep(0.02)
        root.roles.clear()  # committed with the lock's release, before the kill's write goes on
    waiting.join(30)

    assert waiting.response is not None and waiting.response.status_code == 401, waiting.response
    assert list(Run.objects.filter(task=task).values_list("status", flat=True)) == ["active"]
    assert AuditEntry.objects.count() == before
