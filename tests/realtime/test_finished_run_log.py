"""A finished run is frozen over the socket as over REST (``PATCH /api/run`` answers 400): its node's
``algorithm_log`` appends nothing to its log and is relayed to no one. It used to append to the log of any
run of the node, finished long before, and tell every user of the collaboration."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tasks.models import Run
from tests.realtime.helpers import make_run, token, user_socket
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live


def test_a_finished_runs_log_takes_no_more_lines(server, live_world, sockets):
    watching = user_socket(sockets, server.url, live_world.org_b)
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    finished, open_run = make_run(live_world), make_run(live_world)
    Run.objects.using(LIVE).filter(pk=finished.pk).update(
        status="completed", log="done", finished_at=timezone.now()
    )

    node.emit("algorithm_log", {"run_id": finished.pk, "log": "rewritten afterwards"})
    node.emit("algorithm_log", {"run_id": open_run.pk, "log": "still running"})  # handled in order

    relayed = watching.wait_for("algorithm_log")
    assert relayed == {"run_id": open_run.pk, "task_id": open_run.task_id, "log": "still running"}
    assert Run.objects.using(LIVE).get(pk=finished.pk).log == "done"
    assert Run.objects.using(LIVE).get(pk=open_run.pk).log == "still running"
