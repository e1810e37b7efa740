"""Node reports sent by the wrong sender, about the wrong run, or with a forged status: none reaches a
room and none changes a row; the node's own report still does."""

from __future__ import annotations

import random

import pytest

from nodes.models import NodeConfig
from tasks.models import Run, Task
from tests.realtime.helpers import TASKS, eventually, token, user_socket
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live


def _run(org, collaboration) -> Run:
    task = Task(collaboration=collaboration, image="i", job_id=random.randrange(10**6, 10**9), init_org=org)
    task.save(using=LIVE)
    run = Run(task=task, organization=org)
    run.save(using=LIVE)
    return run


def _status(run: Run, status: object = "active") -> dict:
    return {
        "run_id": run.pk,
        "task_id": run.task_id,
        "collaboration_id": run.task.collaboration_id,
        "status": status,
    }


LOG = {"log": "forged"}
# Who sends which event about the run of which organization ("a", "b" in A's collaboration, "c" in
# another), with what changed in the node's usual report.
ATTACKS = [
    ("node_a", "algorithm_status_change", "b", {}),
    ("node_a", "algorithm_status_change", "c", {}),
    ("node_a", "algorithm_log", "b", LOG),
    ("node_a", "algorithm_log", "c", LOG),
    ("node_a", "algorithm_status_change", "a", {"run_id": "self"}),
    ("node_a", "algorithm_status_change", "a", {"run_id": True}),
    # The node's own run with a status no run has, which every user of the collaboration would get.
    ("node_a", "algorithm_status_change", "a", {"status": "<img src=x onerror=alert(1)>"}),
    ("node_a", "algorithm_status_change", "a", {"status": {"nested": ["x" * 1000] * 100}}),
    ("node_a", "algorithm_status_change", "a", {"status": None}),
    ("user", "algorithm_status_change", "a", {}),
    ("user", "algorithm_log", "a", LOG),
    ("user", "node_info_update", "a", {"forged": "yes"}),
    ("anonymous", "algorithm_status_change", "a", {}),
    ("anonymous", "algorithm_log", "a", LOG),
]


@pytest.mark.parametrize(("sender", "event", "about", "changes"), ATTACKS)
def test_a_forged_node_report_reaches_no_room_and_changes_nothing(
    server, live_world, sockets, sender, event, about, changes
):
    watcher = user_socket(sockets, server.url, live_world.org_c, "GLOBAL")
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    if sender == "user":
        attacker = user_socket(sockets, server.url, live_world.org_a)
    elif sender == "anonymous":
        attacker = sockets(server.url, "not-a-token")
        assert eventually(lambda: TASKS in attacker.client.namespaces)
    else:
        attacker = node
    runs = {
        "a": _run(live_world.org_a, live_world.collab_ab),
        "b": _run(live_world.org_b, live_world.collab_ab),
        "c": _run(live_world.org_c, live_world.collab_c),
    }

    attacker.emit(event, {**_status(runs[about]), **changes})
    node.emit("algorithm_status_change", _status(runs["a"], "completed"))  # the node's own, after it

    relayed = watcher.wait_for("algorithm_status_change")
    assert (relayed["run_id"], relayed["status"]) == (runs["a"].pk, "completed")
    assert [name for name, _ in watcher.received(0.5) if name.startswith("algorithm")] == []
    logs = (
        Run.objects.using(LIVE).filter(pk__in=[run.pk for run in runs.values()]).values_list("log", flat=True)
    )
    assert list(logs) == [None] * 3
    assert not NodeConfig.objects.using(LIVE).filter(key="forged").exists()


def test_the_statuses_of_a_run_are_relayed(server, live_world, sockets):
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    run = _run(live_world.org_a, live_world.collab_ab)
    statuses = [
        "initializing",
        "active",
        "completed",
        "crashed",
        "killed by user",
        "non-existing Docker image",
    ]

    for status in statuses:
        node.emit("algorithm_status_change", _status(run, status))

    assert [node.wait_for("algorithm_status_change")["status"] for _ in statuses] == statuses


@pytest.mark.parametrize("event", ["join", "join_room", "enter_room", "subscribe"])
def test_a_user_cannot_join_a_room_by_name(server, live_world, sockets, event):
    watcher = user_socket(sockets, server.url, live_world.org_c, "GLOBAL")
    user = user_socket(sockets, server.url, live_world.org_a)
    node_c = sockets(server.url, token(live_world.node_c))
    node_c.wait_ready(live_world.node_c)
    run = _run(live_world.org_c, live_world.collab_c)

    for room in (f"collaboration_{live_world.collab_c.pk}", "all_nodes"):
        user.emit(event, room)
        user.emit(event, {"room": room})
    node_c.emit("algorithm_status_change", _status(run))

    assert watcher.wait_for("algorithm_status_change")["run_id"] == run.pk
    assert [name for name, _ in user.received(1) if name in ("algorithm_status_change", "node-online")] == []
