"""Beats are written and judged by the database's clock: a process whose own clock runs behind the
others' is neither skipped by their changes of rights (as without a beat) nor buried while it beats."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

import pytest
import requests
from django.db.models import Value
from django.db.models.functions import Now

from nodes.models import SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import eventually
from tests.realtime.live import LIVE, Daphne

pytestmark = [pytest.mark.live, requires_services("postgres", "rabbitmq")]

# Longer than the burial age of the fast timers (2 intervals + timeout + interval + forward timeout).
BEHIND = 30
BEHIND_SERVER = [sys.executable, "-c", "import tests.realtime.clock_behind_server as s; s.main()"]


def _beating_within(seconds: float) -> set[str]:
    """The processes that beat within ``seconds`` (by the database's clock, as ``live_processes``)."""
    since = Now() - Value(timedelta(seconds=seconds))
    return set(SocketProcess.objects.using(LIVE).filter(beat_at__gte=since).values_list("id", flat=True))


def _processes() -> set[str]:
    return set(SocketProcess.objects.using(LIVE).values_list("id", flat=True))


def _started(server: Daphne) -> str:
    """The liveness row of ``server``, once its first request started its beats."""
    known = _processes()
    assert requests.get(f"{server.url}/api/version", timeout=10).status_code == 200
    (process,) = eventually(lambda: _processes() - known)
    return process


def test_a_process_whose_clock_runs_behind_is_waited_for_and_not_buried(live_db, live_folder, broker_only):  # noqa: ARG001
    env = live_db.process_env(V6_RABBITMQ_URI=os.environ["V6_RABBITMQ_URI"])
    behind = Daphne({**env, "CLOCK_BEHIND": str(BEHIND)}, live_folder, BEHIND_SERVER)
    sweeper = Daphne(env, live_folder)
    try:
        drifted = _started(behind)
        _started(sweeper)  # its heartbeat round sweeps every interval (2 s), from now on
        deadline = time.monotonic() + 8  # a few sweeps and beats of both
        lapse = 4  # ``Server.beat_lapse``: two intervals
        while time.monotonic() < deadline:
            assert drifted in _beating_within(lapse), behind.log.read_text()[-2000:]
            time.sleep(0.5)
        assert "taken for dead" not in behind.log.read_text()
    finally:
        sweeper.stop()
        behind.stop()
        sweeper.show_log()
        behind.show_log()
