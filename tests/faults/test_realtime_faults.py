"""The faults of the deployment whose outcome is the work of the Socket.IO layer: events across a
broker restart, nodes of a killed or stopped replica taken over by the other one."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import requires_services
from tests.faults.topology import BOUND
from tests.ops import services
from tests.realtime.helpers import NodeSocket

pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]


def test_rabbitmq_restart_delays_events_not_requests(topology, nodes):
    token = topology.login()
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)
    tasks = [topology.create_task(token, "before-the-broker-outage")]

    topology.rabbitmq.kill()
    try:
        ends = time.monotonic() + 20
        while time.monotonic() < ends:
            for base in topology.replicas.values():
                response, elapsed = topology.request(
                    "POST", "/task", token, base=base, json=topology.task_body("during-the-broker-outage")
                )
                assert response.status_code == 201 and elapsed < BOUND, response.text
                tasks.append(response.json()["id"])
                response, elapsed = topology.request("GET", "/run", token, base=base)
                assert response.status_code == 200 and elapsed < BOUND
            time.sleep(2)
    finally:
        topology.rabbitmq.start()
    for base in topology.replicas.values():  # no process wedged
        assert topology.health_becomes(200, within=30, base=base).status_code == 200
    tasks.append(topology.create_task(token, "after-the-broker-outage"))

    runs = topology.runs_of(tasks)
    assert len(runs) == len(tasks) * len(connected)  # one run per organization and task
    for node in connected:
        assert node.wait_runs(node.own(runs), 30) == set(), f"node {node.id}"
        for run in sorted(node.own(runs)):
            assert node.complete(run) == 200
    assert [node.refused for node in connected] == [[]] * len(connected)  # no run was done twice


def _statuses(topology, node_ids: list[int]) -> dict[int, str]:
    return dict(topology.sql("SELECT id, status FROM authenticatable WHERE id = ANY(%s)", node_ids))


def _gave_up(connected) -> set[int]:
    """The nodes whose client gave up a reconnect itself (``NodeSocket.gave_up``): the server had admitted
    it, maybe, and that node's newest socket closed with no other one anywhere, so it went offline until its
    next connect, as any node whose socket closes. A stopping replica's own drops announce no node."""
    return {node.id for node in connected if node.socket.gave_up}


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_stopped_replica_hands_its_nodes_to_the_other(topology, nodes, stop):
    token = topology.login()
    connected = nodes() + nodes(transports=["polling"])
    assert all(node.wait_connected(1, 20) for node in connected)
    ids = [node.id for node in connected]

    # The replica holding some of the nodes' sockets (the proxy picks one for each).
    for victim in topology.replicas:
        topology.signal(victim, stop)
        killed_at = time.monotonic()
        time.sleep(3)
        if any(node.disconnects for node in connected):
            break
        topology.restart(victim)
    dropped = [node for node in connected if node.disconnects]
    assert dropped

    task_id = topology.create_task(token, "after-the-kill")
    offline = set()
    while time.monotonic() - killed_at < 15:  # nodes do not flap offline
        offline |= {node for node, status in _statuses(topology, ids).items() if status != "online"}
        time.sleep(0.2)
    for node in dropped:  # back through the proxy within the client's retry time
        assert node.wait_connected(2, 0), f"did not reconnect: {node.account(killed_at)}"
        assert node.disconnects[0] - killed_at < 3
    runs = topology.runs_of([task_id])
    for node in connected:
        assert node.wait_runs(node.own(runs), 10) == set(), f"node {node.id}"
    # A long-polling session lived in the replica that answered its handshake: one that died with it
    # is unknown to the survivor (within the forward bound), and its node starts over there.
    for node in connected[len(topology.demo["nodes"]) :]:
        back = node.wait_connected(len(node.disconnects) + 1, 0)
        assert back, f"did not reconnect: {node.account(killed_at)}"
    # The newest connection of every node (one per identity) is held by a live process.
    held = "SELECT count(*) FROM socket_connection c JOIN socket_process p ON p.id = c.process"
    assert topology.sql(f"{held} WHERE c.identity_id = ANY(%s)", ids) == [(len(set(ids)),)]
    assert offline <= _gave_up(connected)


def test_a_graceful_stop_does_not_announce_its_nodes_offline(topology, nodes):
    """The nodes of a replica stopped with SIGTERM reconnect to the other one at once: the researcher's
    socket (on the other replica) hears no ``node-offline`` and the nodes stay online throughout, also a
    node whose client gave up a reconnect itself (``_gave_up``): the connection the stopping replica
    dropped is on record again until its retry."""
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)
    ids = [node.id for node in connected]
    for victim in topology.replicas:
        other = next(url for name, url in topology.replicas.items() if name != victim)
        researcher = NodeSocket(other, topology.login())
        researcher.wait_for("message")  # joined its rooms
        topology.signal(victim, signal.SIGTERM)
        stopped_at = time.monotonic()
        time.sleep(1)
        if any(node.disconnects for node in connected):
            break
        researcher.close()
        topology.restart(victim)
    dropped = [node for node in connected if node.disconnects]
    assert dropped

    offline = set()
    while time.monotonic() - stopped_at < 5:
        offline |= {node for node, status in _statuses(topology, ids).items() if status != "online"}
        time.sleep(0.2)
    for node in dropped:
        # At once, or after the client's own retries once it gave a reconnect up (2 s, then 4 s later).
        back = node.wait_connected(2, 0) or (node.socket.gave_up and node.wait_connected(2, 10))
        assert back, f"did not reconnect: {node.account(stopped_at)}"
        # Dropped once: the stopping replica takes no new socket (a handshake or upgrade that reaches it
        # over the proxy's kept-alive connections), which it would drop moments later: python-socketio's
        # client, dropped while its reconnection ends, may never connect again.
        assert len(node.disconnects) == 1, f"node {node.id} was dropped {len(node.disconnects)} times"
    heard = researcher.received(1)
    researcher.close()
    assert [data for event, data in heard if event == "node-offline"] == [], _gave_up(connected)
    assert offline == set(), _gave_up(connected)
    assert set(_statuses(topology, ids).values()) == {"online"}
    topology.restart(victim)
