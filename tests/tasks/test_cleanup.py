"""Clearing old results (and inputs) of completed runs: manage.py cleanup_runs, and the built-in hourly
clean-up that one server process of a cluster does per hour."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import AuditEntry
from tasks.models import Run
from tasks.services import runs_cleanup_if_due
from tests.conftest import requires_services
from tests.factories import make_run, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(world):
    task = make_task(world.collab_ab, world.org_a)
    now = timezone.now()
    old = make_run(
        task, world.org_a, status="completed", finished_at=now - timedelta(days=40), input="in", result="r"
    )
    recent = make_run(
        task, world.org_b, status="completed", finished_at=now - timedelta(days=2), input="in", result="r"
    )
    failed = make_run(
        task, world.org_b, status="crashed", finished_at=now - timedelta(days=40), input="in", result="r"
    )
    return old, recent, failed


def run_command(*args) -> str:
    out = StringIO()
    call_command("cleanup_runs", *args, stdout=out)
    return out.getvalue()


def test_clears_results_of_old_completed_runs(aged, settings):
    settings.RUNS_DATA_CLEANUP_DAYS = 30
    settings.RUNS_DATA_CLEANUP_INCLUDE_INPUT = False
    assert "1 run(s)" in run_command()
    old, recent, failed = (Run.objects.get(pk=run.pk) for run in aged)
    assert (old.result, old.input) == ("", "in") and old.cleanup_at is not None
    assert (recent.result, recent.cleanup_at) == ("r", None)
    assert (failed.result, failed.cleanup_at) == ("r", None)
    assert "0 run(s)" in run_command()  # already cleaned runs are left alone


def test_includes_inputs_when_asked(aged, settings):
    settings.RUNS_DATA_CLEANUP_DAYS = 0
    assert "off" in run_command()
    assert Run.objects.filter(cleanup_at__isnull=False).count() == 0
    run_command("--days", "1", "--include-input")
    old, recent, _ = (Run.objects.get(pk=run.pk) for run in aged)
    assert (old.result, old.input) == ("", "")
    assert (recent.result, recent.input) == ("", "")


@pytest.mark.parametrize("days", ["0", "-3", "ten"])
def test_bad_input_is_a_clear_error(days):
    with pytest.raises(CommandError, match="--days"):
        run_command("--days", days)


def test_help_and_exit_status():
    help_text = subprocess.run(
        [sys.executable, "manage.py", "cleanup_runs", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--days" in help_text and "--include-input" in help_text
    failed = subprocess.run(
        [sys.executable, "manage.py", "cleanup_runs", "--days", "zero"], capture_output=True, text=True
    )
    assert failed.returncode != 0
    assert "--days must be a whole number" in failed.stderr


def cleanups() -> int:
    return AuditEntry.objects.filter(action="run.cleanup").count()


def test_builtin_cleanup_runs_once_per_hour(aged, settings):
    settings.RUNS_DATA_CLEANUP_DAYS = 30
    now = timezone.now()
    assert runs_cleanup_if_due(now=now) == 1
    old, recent, _ = (Run.objects.get(pk=run.pk) for run in aged)
    assert old.result == "" and recent.result == "r"
    for later, due in [(timedelta(0), False), (timedelta(minutes=59), False), (timedelta(hours=1), True)]:
        assert (runs_cleanup_if_due(now=now + later) is not None) == due
    assert cleanups() == 2


def test_builtin_cleanup_is_off_without_days(aged, settings):  # noqa: ARG001 - runs to leave alone
    settings.RUNS_DATA_CLEANUP_DAYS = 0
    assert runs_cleanup_if_due() is None
    assert cleanups() == 0
    assert not Run.objects.filter(cleanup_at__isnull=False).exists()


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_builtin_cleanup_racing_processes_run_it_once(aged, settings):  # noqa: ARG001 - runs to clear
    """Server processes reach the hour together: each on its own connection, one of them does it."""
    from django.db import connection

    settings.RUNS_DATA_CLEANUP_DAYS = 30
    now = timezone.now()
    start = threading.Barrier(4)
    results = []

    def process() -> None:
        start.wait()
        try:
            results.append(runs_cleanup_if_due(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [1, None, None, None]
    assert cleanups() == 1
