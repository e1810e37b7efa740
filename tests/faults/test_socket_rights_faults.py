"""An open socket follows its rights across a broker outage: a change made while RabbitMQ is away, whose
recheck cannot reach the other replica, still moves the socket there once the broker is back."""

from __future__ import annotations

import signal
import uuid

from tests.conftest import requires_services
from tests.faults.topology import BOUND, ROOT_PASSWORD, Topology
from tests.ops import services
from tests.realtime.helpers import NodeSocket

pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]

PASSWORD = "Listener-Passw0rd!"


def _ok(response) -> dict:
    assert response.ok, response.text
    return response.json()


def _researcher(topology: Topology, root: str) -> tuple[int, str]:
    """A new user of the first demo organization with the role Researcher: his id and access token."""
    roles = _ok(topology.request("GET", "/role", root, params={"name": "Researcher"})[0])["data"]
    role = next(role["id"] for role in roles if role["name"] == "Researcher")
    username = f"listener{uuid.uuid4().hex[:8]}"
    body = {
        "username": username,
        "email": f"{username}@example.org",
        "password": PASSWORD,
        "organization_id": topology.demo["nodes"][0]["organization_id"],
        "roles": [role],
    }
    user = _ok(topology.request("POST", "/user", root, json=body)[0])
    return user["id"], topology.login(username, PASSWORD)


def test_a_role_taken_while_the_broker_is_away_moves_the_socket_of_the_other_replica(topology):
    (first, a), (_second, b) = topology.replicas.items()
    root = topology.login("root", ROOT_PASSWORD)
    user_id, listener_token = _researcher(topology, root)
    researcher = topology.login()  # the demo researcher, whose rights stay: the witness
    room = f"collaboration_{topology.demo['collaboration']['id']}"
    listener = NodeSocket(b, listener_token)
    witness = NodeSocket(b, researcher)
    try:
        for socket in (listener, witness):
            socket.wait_for("message", where=lambda text: text.endswith(f"joined room {room}"), timeout=20)
        task_id = topology.create_task(researcher, "before-the-outage", base=a)
        for socket in (listener, witness):  # from replica A through the broker
            assert socket.wait_for("new_task", timeout=20)["id"] == task_id
        sid = listener.client.eio.sid

        topology.rabbitmq.kill()
        try:
            response, elapsed = topology.request(
                "PATCH", f"/user/{user_id}", root, base=a, json={"roles": []}
            )
            assert response.status_code == 200 and elapsed < BOUND, response.text
            # Replica A's recheck waits for the broker: it dies with A, so that it surely never reaches B.
            topology.signal(first, signal.SIGKILL)
        finally:
            topology.rabbitmq.start()

        # B checks its sockets again once its broker is back.
        listener.wait_for("message", where=lambda text: text.endswith(f"left room {room}"), timeout=30)
        task_id = topology.create_task(researcher, "after-the-outage", base=b)
        assert witness.wait_for("new_task", timeout=20)["id"] == task_id
        assert "new_task" not in [name for name, _ in listener.received(1)]
        assert listener.client.eio.sid == sid  # the same connection throughout
    finally:
        listener.close()
        witness.close()
