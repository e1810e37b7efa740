"""An open socket follows its rights when its broker comes back while the database is away: the check of
all the sockets that follows the broker's return waits for the database instead of being skipped."""

from __future__ import annotations

import re
import signal
import time

from tests.conftest import requires_services
from tests.faults.test_socket_rights_faults import _researcher
from tests.faults.topology import BOUND, ROOT_PASSWORD, Topology
from tests.ops import services
from tests.realtime.helpers import NodeSocket

pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]

_RECHECK_REFUSED = re.compile(r"recheck of \d+ sessions \w+, database error")


def _wait_in_log(topology: Topology, replica: str, pattern: re.Pattern, since: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pattern.search(topology.log(replica).read_text()[since:]):
        assert time.monotonic() < deadline, f"{pattern.pattern!r} not in the log of {replica}"
        time.sleep(0.1)


def test_a_role_taken_while_the_broker_is_away_moves_the_socket_once_the_database_is_back(topology):
    (first, a), (second, b) = topology.replicas.items()
    root = topology.login("root", ROOT_PASSWORD)
    user_id, listener_token = _researcher(topology, root)
    researcher = topology.login()  # the demo researcher, whose rights stay: the witness
    room = f"collaboration_{topology.demo['collaboration']['id']}"
    listener = NodeSocket(b, listener_token)
    witness = NodeSocket(b, researcher)
    try:
        for socket in (listener, witness):
            socket.wait_for("message", where=lambda text: text.endswith(f"joined room {room}"), timeout=20)
        sid = listener.client.eio.sid

        topology.rabbitmq.kill()
        try:
            response, elapsed = topology.request(
                "PATCH", f"/user/{user_id}", root, base=a, json={"roles": []}
            )
            assert response.status_code == 200 and elapsed < BOUND, response.text
            # Replica A's recheck waits for the broker: it dies with A, so that it surely never reaches B.
            topology.signal(first, signal.SIGKILL)
            topology.postgres.kill()
            logged = len(topology.log(second).read_text())
        finally:
            topology.rabbitmq.start()
        try:
            # B's broker is back and it checks all its sockets, but the database does not answer.
            _wait_in_log(topology, second, _RECHECK_REFUSED, logged, timeout=60)
        finally:
            topology.postgres.start()

        listener.wait_for("message", where=lambda text: text.endswith(f"left room {room}"), timeout=30)
        task_id = topology.create_task(researcher, "after-the-outages", base=b)
        assert witness.wait_for("new_task", timeout=20)["id"] == task_id
        assert "new_task" not in [name for name, _ in listener.received(1)]
        assert listener.client.eio.sid == sid  # the same connection throughout
    finally:
        listener.close()
        witness.close()
