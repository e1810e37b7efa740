"""The processes of one ``python -m vantage6.serve`` pass each other their room events over their own
links: a node's event on one process reaches a node on the other once, with RabbitMQ there or absent."""

from __future__ import annotations

import pytest

from tests.realtime.helpers import apart, create_task, make_run, make_user, token

pytestmark = pytest.mark.live


def test_a_node_event_on_one_process_reaches_a_node_on_the_other_once(family, live_world, sockets):
    sender, listener = apart(sockets, family.url, token(live_world.node_a), token(live_world.node_b))
    sender.wait_ready(live_world.node_a)
    listener.wait_ready(live_world.node_b)
    run = make_run(live_world)

    statuses = ["active", "completed"] * 5
    for status in statuses:  # one at a time
        sender.emit("algorithm_status_change", {"run_id": run.pk, "status": status})
        assert listener.wait_for("algorithm_status_change")["status"] == status
        assert sender.wait_for("algorithm_status_change")["status"] == status
    # Once each: nothing more comes.
    for socket in (sender, listener):
        assert [name for name, _ in socket.received(0.5) if name == "algorithm_status_change"] == []

    # Still authorized as before: a run of another organization is not the node's to report on.
    other = make_run(live_world, live_world.org_b)
    sender.emit("algorithm_status_change", {"run_id": other.pk, "status": "failed"})
    assert [name for name, _ in listener.received(1) if name == "algorithm_status_change"] == []


def test_a_rest_requests_event_reaches_the_nodes_on_both_processes_once(family, live_world, sockets):
    first, second = apart(sockets, family.url, token(live_world.node_a), token(live_world.node_b))
    first.wait_ready(live_world.node_a)
    second.wait_ready(live_world.node_b)

    task_id = create_task(
        family.url, make_user(live_world.org_a, roles=("Researcher",)), live_world.collab_ab
    )

    for socket in (first, second):
        assert socket.wait_for("new_task") == {"id": task_id, "parent_id": None}
        assert [name for name, _ in socket.received(0.5) if name == "new_task"] == []
