"""What a node reports over its socket reaches its collaboration's members only while its organization is
one of them: a node whose organization left (or was taken out of) the collaboration neither tells the
members about its runs there nor writes their logs."""

from __future__ import annotations

import pytest

from tasks.models import Run
from tests.realtime.helpers import make_run, make_user, token
from tests.realtime.live import LIVE
from tests.realtime.test_socket_rights import _call, left

live = pytest.mark.live


@live
def test_a_node_whose_organization_left_the_collaboration_reports_nothing_to_its_members(
    server, live_world, sockets
):
    ab = live_world.collab_ab.pk
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    witness = sockets(server.url, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    run = make_run(live_world, live_world.org_a)
    report = {"run_id": run.pk, "task_id": run.task_id, "collaboration_id": ab, "status": "active"}
    node.emit("algorithm_status_change", report)
    assert witness.wait_for("algorithm_status_change")["run_id"] == run.pk  # heard while a member
    admin = token(make_user(live_world.org_b, roles=("Root",)))

    _call("DELETE", f"{server.url}/api/collaboration/{ab}/organization", admin, id=live_world.org_a.pk)
    node.wait_for("message", where=left(f"collaboration_{ab}"), timeout=5)
    node.emit("algorithm_status_change", {**report, "status": "completed"})
    node.emit("algorithm_log", {"run_id": run.pk, "log": "written after leaving"})

    assert [name for name, _ in witness.received(2) if name.startswith("algorithm_")] == []
    assert not Run.objects.using(LIVE).get(pk=run.pk).log
