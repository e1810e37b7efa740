"""The hourly run data clean-up runs inside the server, in one of its processes: no command, no cron."""

from __future__ import annotations

import time
from datetime import timedelta

import requests
from django.utils import timezone

from accounts.models import AuditEntry
from tasks.models import PeriodicJob, Run, Task
from tests.realtime.live import LIVE, Daphne


def _completed_run(world, finished_days_ago: int) -> Run:
    task = Task.objects.using(LIVE).create(
        collaboration=world.collab_ab, init_org=world.org_a, image="some/image", job_id=0
    )
    finished = timezone.now() - timedelta(days=finished_days_ago)
    return Run.objects.using(LIVE).create(
        task=task, organization=world.org_a, status="completed", finished_at=finished, input="in", result="r"
    )


def test_two_processes_clear_old_results_once(live_db, live_folder, live_world):
    PeriodicJob.objects.using(LIVE).all().delete()
    old, recent = _completed_run(live_world, 40), _completed_run(live_world, 2)
    since = timezone.now()
    env = live_db.process_env(V6_RUNS_DATA_CLEANUP_DAYS="30")
    servers = []
    try:
        servers += [Daphne(env, live_folder), Daphne(env, live_folder)]
        for server in servers:  # a first request starts a process's periodic work
            assert requests.get(f"{server.url}/api/version", timeout=5).status_code == 200
        deadline = time.monotonic() + 15
        while Run.objects.using(LIVE).get(pk=old.pk).result and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # many more periodic rounds of both processes (every 0.15 s here)
    finally:
        for server in servers:
            server.stop()
    assert Run.objects.using(LIVE).get(pk=old.pk).result == ""
    assert Run.objects.using(LIVE).get(pk=recent.pk).result == "r"
    assert AuditEntry.objects.using(LIVE).filter(action="run.cleanup", created_at__gte=since).count() == 1
