"""PostgreSQL restarted under the loop's reader (the connection that reads a node's status report in
the event loop): the reports sent once it is back are relayed, the first one too."""

from __future__ import annotations

from tests.conftest import requires_services
from tests.ops import services
from tests.realtime.helpers import NodeSocket

pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]


def _report(topology, run_id: int, status: str) -> dict:
    (task_id,) = topology.sql("SELECT task_id FROM run WHERE id = %s", run_id)[0]
    return {
        "run_id": run_id,
        "task_id": task_id,
        "collaboration_id": topology.demo["collaboration"]["id"],
        "status": status,
    }


def _relayed(researcher: NodeSocket, run_id: int, status: str) -> None:
    def reported(data: dict) -> bool:
        return data["run_id"] == run_id and data["status"] == status

    researcher.wait_for("algorithm_status_change", timeout=10, where=reported)


def test_status_reports_are_relayed_again_after_a_postgres_restart(topology, nodes):
    token = topology.login()
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)
    researcher = NodeSocket(topology.url, token)
    try:
        researcher.wait_joined()
        runs = topology.runs_of([topology.create_task(token, "reported-across-a-restart")])
        node = connected[0]
        (run_id,) = node.own(runs)
        assert node.wait_runs({run_id}, 30) == set()
        node.socket.emit("algorithm_status_change", _report(topology, run_id, "initializing"))
        _relayed(researcher, run_id, "initializing")

        topology.postgres.kill()
        topology.postgres.start()
        for base in topology.replicas.values():
            assert topology.health_becomes(200, within=30, base=base).status_code == 200

        # The reader's connection died with the server: the read is handed over, and the reader connects
        # again, the report relayed all the same.
        node.socket.emit("algorithm_status_change", _report(topology, run_id, "active"))
        _relayed(researcher, run_id, "active")
        node.socket.emit("algorithm_status_change", _report(topology, run_id, "completed"))
        _relayed(researcher, run_id, "completed")
    finally:
        researcher.close()
