"""An open socket follows its rights when its broker comes back while the database is away: the check of
all the sockets that follows the broker's return waits for the database instead of being skipped."""

from __future__ import annotations

import re
import time

from tests.conftest import requires_services
from tests.faults.test_socket_rights_faults import listening
from tests.faults.topology import Topology
from tests.ops import services

pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]

_RECHECK_REFUSED = re.compile(r"recheck of \d+ sessions \w+, database error")


def _wait_in_log(topology: Topology, replica: str, pattern: re.Pattern, since: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pattern.search(topology.log(replica).read_text()[since:]):
        assert time.monotonic() < deadline, f"{pattern.pattern!r} not in the log of {replica}"
        time.sleep(0.1)


def test_a_role_taken_while_the_broker_is_away_moves_the_socket_once_the_database_is_back(topology):
    _, (second, b) = topology.replicas.items()
    with listening(topology, b) as sockets:
        sid = sockets.listener.client.eio.sid

        with sockets.role_taken_with_the_broker_away(topology):
            topology.postgres.kill()
            logged = len(topology.log(second).read_text())
        try:
            # B's broker is back and it checks all its sockets, but the database does not answer.
            _wait_in_log(topology, second, _RECHECK_REFUSED, logged, timeout=60)
        finally:
            topology.postgres.start()

        sockets.ends_unheard(topology, b, sid, "after-the-outages")
