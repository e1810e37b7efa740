"""The end of a database outage tells the process's nodes ``sync`` whatever noticed the outage: a node
told of a task while the database was away could not fetch it. Before, only a housekeeping round that
failed during the outage led to the ``sync``, and an outage between two rounds went unnoticed."""

from __future__ import annotations

from functools import partial

import pytest

from tests.ops import services
from tests.ops.test_outages import Stack
from tests.realtime.helpers import NodeSocket

pytestmark = services.marks()

# No housekeeping round (nor heartbeat) within the test: the outage is noticed by a request alone.
QUIET = {
    "V6_SOCKET_PING_INTERVAL": "120",
    "V6_SOCKET_PING_TIMEOUT": "60",
    "V6_NODE_HEARTBEAT_TIMEOUT": "2400",
}


class QuietStack(Stack):
    def start(self) -> None:
        super().start()
        server = self.server
        assert server is not None
        server.stop()
        server.env = {**server.env, **QUIET}
        server.start()


@pytest.fixture(scope="module")
def stack(private_postgres, private_rabbitmq):
    make = partial(QuietStack, postgres=private_postgres, rabbitmq=private_rabbitmq)
    with services.running("v6-resync-", make) as stack:
        yield stack


def test_nodes_hear_sync_after_an_outage_only_a_request_noticed(stack):
    token = stack.node_token()
    node = NodeSocket(stack.url, token)
    try:
        node.wait_for("sync")  # of its connect
        node.heard(1)  # its room joins
        stack.postgres.kill()
        try:
            response, _ = stack.request("GET", "/api/run", token)
            assert response.status_code == 503, response.text
        finally:
            stack.postgres.start()
        assert stack.health_becomes(200, within=15).status_code == 200
        # Up to the sync: a loaded machine may take seconds to start the task that sends it.
        heard = [name for name, _ in node.heard(20, until=("sync", None))]
    finally:
        node.close()

    assert "sync" in heard, heard
    assert "disconnect" not in heard and "connect" not in heard, heard  # not the sync of a reconnect
    assert "database reachable again" in stack.server.log.read_text()
