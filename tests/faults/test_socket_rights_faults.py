"""An open socket follows its rights across a broker outage: a change made while RabbitMQ is away, whose
recheck cannot reach the other replica, still moves the socket there once the broker is back."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass
class Listening:
    """A listener (a new researcher, whose role is to be taken) and a witness (the demo researcher, whose
    rights stay), both connected to replica ``b`` and in the demo collaboration's room."""

    root: str
    user_id: int
    researcher: str
    room: str
    listener: NodeSocket
    witness: NodeSocket

    @contextmanager
    def role_taken_with_the_broker_away(self, topology: Topology) -> Iterator[None]:
        """The listener's role taken through the first replica while RabbitMQ is away; that replica's
        recheck waits for the broker, and it dies with the replica, so that it surely never reaches the
        second. The broker starts again after the body."""
        (first, a), _ = topology.replicas.items()
        topology.rabbitmq.kill()
        try:
            response, elapsed = topology.request(
                "PATCH", f"/user/{self.user_id}", self.root, base=a, json={"roles": []}
            )
            assert response.status_code == 200 and elapsed < BOUND, response.text
            topology.signal(first, signal.SIGKILL)
            yield
        finally:
            topology.rabbitmq.start()

    def ends_unheard(self, topology: Topology, base: str, sid: str, task_name: str) -> None:
        """After the outage: the listener left the room on the same connection and no longer hears of a
        new task there, which the witness does."""
        left = f"left room {self.room}"
        self.listener.wait_for("message", where=lambda text: text.endswith(left), timeout=30)
        task_id = topology.create_task(self.researcher, task_name, base=base)
        assert self.witness.wait_for("new_task", timeout=20)["id"] == task_id
        assert "new_task" not in [name for name, _ in self.listener.received(1)]
        assert self.listener.client.eio.sid == sid  # the same connection throughout


@contextmanager
def listening(topology: Topology, b: str) -> Iterator[Listening]:
    root = topology.login("root", ROOT_PASSWORD)
    user_id, listener_token = _researcher(topology, root)
    room = f"collaboration_{topology.demo['collaboration']['id']}"
    researcher = topology.login()
    listener = NodeSocket(b, listener_token)
    witness = NodeSocket(b, researcher)
    try:
        for socket in (listener, witness):
            socket.wait_for("message", where=lambda text: text.endswith(f"joined room {room}"), timeout=20)
        yield Listening(root, user_id, researcher, room, listener, witness)
    finally:
        listener.close()
        witness.close()


def test_a_role_taken_while_the_broker_is_away_moves_the_socket_of_the_other_replica(topology):
    (_first, a), (_second, b) = topology.replicas.items()
    with listening(topology, b) as sockets:
        task_id = topology.create_task(sockets.researcher, "before-the-outage", base=a)
        for socket in (sockets.listener, sockets.witness):  # from replica A through the broker
            assert socket.wait_for("new_task", timeout=20)["id"] == task_id
        sid = sockets.listener.client.eio.sid

        with sockets.role_taken_with_the_broker_away(topology):
            pass

        # B checks its sockets again once its broker is back.
        sockets.ends_unheard(topology, b, sid, "after-the-outage")
