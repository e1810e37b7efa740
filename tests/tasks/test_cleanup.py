"""manage.py cleanup_runs: clearing old results (and inputs) of completed runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tasks.models import Run
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
