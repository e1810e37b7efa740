"""One deployment for all the fault tests (it takes 10 to 50 s to start and 15 s to stop): each test
restarts what it stops, its replicas run again after each test, and its nodes are closed."""

from __future__ import annotations

from functools import partial

import pytest

from tests.faults.topology import Node, Topology
from tests.ops import services


@pytest.fixture(scope="package")
def topology(private_postgres, private_rabbitmq):
    make = partial(Topology, postgres=private_postgres, rabbitmq=private_rabbitmq)
    with services.running("v6-faults-", make) as deployment:
        yield deployment


@pytest.fixture(autouse=True)
def _every_replica_runs_after_the_test(topology):
    """A test that stopped a replica and failed before starting it again leaves the next ones a whole
    deployment."""
    yield
    for replica in topology.replicas:
        if not topology.alive(replica):
            topology.restart(replica)


@pytest.fixture
def nodes(topology):
    """The demo network's nodes, connected through the proxy; ``nodes(transports=[...])`` for others."""
    opened: list[Node] = []

    def connect(**kwargs) -> list[Node]:
        opened.extend(Node(topology, info, **kwargs) for info in topology.demo["nodes"])
        return opened[-len(topology.demo["nodes"]) :]

    yield connect
    for node in opened:
        node.close()
