"""A socket that floods events (each may be relayed to every socket of a room) has the excess dropped,
logged once; a node's ordinary traffic passes. A run's log grows over the socket no larger than a
request body could make it."""

from __future__ import annotations

import random
import time

import pytest

from tasks.models import Run, Task
from tests.realtime.helpers import ready_nodes, token
from tests.realtime.live import LIVE, Daphne

pytestmark = pytest.mark.live

BURST, RATE = 10, 5


@pytest.fixture(scope="module")
def bounded_server(live_db, live_folder):
    daphne = Daphne(
        live_db.process_env(
            V6_SOCKET_PACKET_BURST=str(BURST), V6_SOCKET_PACKET_RATE=str(RATE), V6_MAX_BODY_MB="1"
        ),
        live_folder,
    )
    yield daphne
    daphne.stop()
    daphne.show_log()


def _report(world) -> dict:
    task = Task(
        collaboration=world.collab_ab, image="i", job_id=random.randrange(10**6, 10**9), init_org=world.org_a
    )
    task.save(using=LIVE)
    run = Run(task=task, organization=world.org_a)
    run.save(using=LIVE)
    return {"run_id": run.pk, "task_id": task.pk, "collaboration_id": world.collab_ab.pk, "status": "active"}


def _relayed(socket, seconds: float) -> int:
    return sum(name == "algorithm_status_change" for name, _ in socket.received(seconds))


def test_an_event_flood_is_relayed_only_up_to_the_bound(bounded_server, live_world, sockets):
    watcher, node = ready_nodes(sockets, bounded_server.url, live_world.node_b, live_world.node_a)
    report = _report(live_world)

    started = time.monotonic()
    for _ in range(300):
        node.emit("algorithm_status_change", report)
    flooding = time.monotonic() - started

    relayed = _relayed(watcher, 2)
    # The burst less the node's CONNECT, plus what the rate refilled while it flooded.
    assert BURST - 1 <= relayed <= BURST + RATE * (flooding + 0.5)
    log = bounded_server.log.read_text()
    assert log.count("packets per second; the excess is dropped") == 1
    assert f"node:{live_world.node_a.pk}" in log

    time.sleep(BURST / RATE)  # the bucket refills
    for _ in range(3):  # a node's ordinary traffic: a few status changes per run
        node.emit("algorithm_status_change", report)
        time.sleep(0.1)
    assert _relayed(watcher, 2) == 3
    assert bounded_server.log.read_text().count("the excess is dropped") == 1  # once a minute at most


def test_a_run_log_grows_no_larger_than_a_request_body(bounded_server, live_world, sockets):
    node = sockets(bounded_server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    report = _report(live_world)
    line = "x" * 400_000  # 1 MiB is the request body limit of this server

    for _ in range(3):
        node.emit("algorithm_log", {**report, "log": line})
    node.emit("algorithm_log", {**report, "log": "end"})

    relayed = [data["log"] for name, data in node.received(3) if name == "algorithm_log"]
    assert relayed == [line, line, "end"]
    assert Run.objects.using(LIVE).get(pk=report["run_id"]).log == f"{line}\n{line}\nend"
