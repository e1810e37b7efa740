"""Faults a node operator meets: a replica killed with its nodes' sockets and no other replica for them to
go to, and PostgreSQL dying while tasks are being created."""

from __future__ import annotations

import signal
import threading
import time

from tests.conftest import requires_services
from tests.faults.topology import BOUND
from tests.ops import services
from tests.realtime.helpers import NodeSocket

pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]


def _statuses(topology, node_ids: list[int]) -> set[str]:
    return {
        status
        for (status,) in topology.sql("SELECT status FROM authenticatable WHERE id = ANY(%s)", node_ids)
    }


def _node_token(topology, node: dict) -> str:
    response, _ = topology.request("POST", "/token/node", json={"api_key": node["api_key"]})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _notices(researcher: NodeSocket, event: str, node_ids: set[int], within: float) -> set[int]:
    """The nodes of ``node_ids`` that ``researcher`` heard ``event`` of within ``within`` seconds."""
    heard: set[int] = set()
    deadline = time.monotonic() + within
    while heard != node_ids and time.monotonic() < deadline:
        for name, data in researcher.received(0.5):
            if name == event and data["id"] in node_ids:
                heard.add(data["id"])
    return heard


def test_the_nodes_of_a_killed_replica_are_offline_once_it_is_buried_and_online_when_they_come_back(topology):
    """The nodes' sockets are on replica-1 alone (no proxy to take them elsewhere), which is killed: the
    survivor buries it and announces its nodes offline, well within the heartbeat window (65 s), and once
    replica-1 is back the nodes' own reconnects bring them online again, announced."""
    victim, survivor = "replica-1", "replica-2"
    infos = topology.demo["nodes"]
    ids = {info["id"] for info in infos}
    researcher = NodeSocket(topology.replicas[survivor], topology.login())
    researcher.wait_for("message")  # joined its rooms
    sockets = [NodeSocket(topology.replicas[victim], _node_token(topology, info)) for info in infos]
    try:
        for socket in sockets:
            socket.wait_joined(20)
        assert _statuses(topology, list(ids)) == {"online"}
        researcher.received(0.5)  # the notices of their connects

        topology.signal(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        assert _notices(researcher, "node-offline", ids, 40) == ids
        assert time.monotonic() - killed_at < 40
        assert _statuses(topology, list(ids)) == {"offline"}

        topology.restart(victim)  # the clients' reconnects (every few seconds) reach it
        assert _notices(researcher, "node-online", ids, 30) == ids
        assert _statuses(topology, list(ids)) == {"online"}
    finally:
        researcher.close()
        for socket in sockets:
            socket.close()


def test_postgres_dying_while_tasks_are_created_leaves_whole_tasks_or_none(topology, nodes):
    """Tasks are created through the proxy, without pause, while PostgreSQL is killed and started again:
    each answer is a 201 or a clear JSON 503 within the bound; every task stored has a run for each
    organization (none half written), each 201 among them; and the nodes get the runs of all of them once
    the database is back."""
    token = topology.login()
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)
    answers: list[tuple[str, int, str, float]] = []
    stop = threading.Event()

    def create() -> None:
        number = 0
        while not stop.is_set():
            name = f"created-across-the-outage-{number}"
            number += 1
            try:
                response, elapsed = topology.request("POST", "/task", token, json=topology.task_body(name))
            except Exception as exc:
                answers.append((name, 0, repr(exc), 0.0))
                continue
            answers.append((name, response.status_code, response.headers.get("Content-Type", ""), elapsed))

    creating = threading.Thread(target=create, daemon=True)
    creating.start()
    try:
        time.sleep(1)
        topology.postgres.kill()
        time.sleep(3)
    finally:
        topology.postgres.start()
    for base in topology.replicas.values():
        assert topology.health_becomes(200, within=30, base=base).status_code == 200
    time.sleep(1)
    stop.set()
    creating.join(30)

    statuses = {status for _, status, _, _ in answers}
    assert statuses <= {201, 503}, [answer for answer in answers if answer[1] not in (201, 503)]
    assert 503 in statuses and 201 in statuses
    assert all(kind == "application/json" and elapsed < BOUND for _, _, kind, elapsed in answers)
    stored = dict(
        topology.sql(
            "SELECT t.name, count(r.id) FROM task t LEFT JOIN run r ON r.task_id = t.id"
            " WHERE t.name LIKE 'created-across-the-outage-%%' GROUP BY t.name"
        )
    )
    assert set(stored.values()) == {len(connected)}, stored  # whole tasks only
    assert {name for name, status, _, _ in answers if status == 201} <= set(stored)
    ids = [task_id for (task_id,) in topology.sql("SELECT id FROM task WHERE name = ANY(%s)", list(stored))]
    runs = topology.runs_of(ids)
    for node in connected:
        assert node.wait_runs(node.own(runs), 30) == set(), f"node {node.id}"


def _heard_status_update(researcher: NodeSocket, run_id: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for name, data in researcher.received(0.5):
            if name == "status_update" and data == {"run_id": run_id}:
                return True
    return False


def test_a_run_patched_while_rabbitmq_is_away_is_announced_by_its_replica_and_events_flow_again_after(
    topology, nodes
):
    """A node PATCHes its run on replica-1 while RabbitMQ is down: the answer comes within the bound and
    the researcher's socket on replica-1 hears ``status_update`` at once. The one on replica-2 may miss it
    (replica-1 sends what it kept once it reconnects, maybe before replica-2 bound its rooms again: see
    the README); the run's status is read over REST. Once the broker is back, the next PATCH's
    ``status_update`` reaches replica-2's socket too."""
    token = topology.login()
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)
    task_id = topology.create_task(token, "patched-while-the-broker-is-away")
    node = connected[0]
    (run_id,) = node.own(topology.runs_of([task_id]))
    listeners = {name: NodeSocket(url, token) for name, url in topology.replicas.items()}

    def patch() -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        base = topology.replicas["replica-1"]
        response, elapsed = topology.request(
            "PATCH", f"/run/{run_id}", node.access, base=base, json={"started_at": now}
        )
        assert response.status_code == 200 and elapsed < BOUND, response.text

    try:
        for listener in listeners.values():
            listener.wait_for("message")  # joined its rooms
        topology.rabbitmq.kill()
        try:
            patch()
            assert _heard_status_update(listeners["replica-1"], run_id, 5)
        finally:
            topology.rabbitmq.start()
        for base in topology.replicas.values():
            assert topology.health_becomes(200, within=30, base=base).status_code == 200
        deadline = time.monotonic() + 30
        while True:  # each replica binds its rooms again once it has the broker back
            patch()
            if _heard_status_update(listeners["replica-2"], run_id, 2):
                break
            assert time.monotonic() < deadline, "no status_update reached replica-2 after the broker's return"
    finally:
        for listener in listeners.values():
            listener.close()
