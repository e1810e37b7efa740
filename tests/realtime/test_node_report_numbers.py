"""A node's resource report (``node_metrics_update``) with a number no gauge can hold (JSON's integers
have no bound) has that metric left out, as any other value of the wrong type: the rest of the report is
kept. It used to raise in the handler (a traceback in the log per event) and drop the whole report."""

from __future__ import annotations

import pytest

from nodes.models import NodeMetrics
from tests.realtime.helpers import eventually, token
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live


def test_a_number_beyond_a_float_is_left_out_of_the_report(server, live_world, sockets):
    node_a = live_world.node_a
    node = sockets(server.url, token(node_a))
    node.wait_ready(node_a)

    node.emit(
        "node_metrics_update",
        {"os": "Linux", "memory_percent": 40, "cpu_percent": 10**400, "gpu_load": [0.5, -(2**1100)]},
    )

    kept = eventually(lambda: NodeMetrics.objects.using(LIVE).filter(node_id=node_a.pk).first())
    assert kept is not None
    assert (kept.os, kept.values) == ("Linux", {"memory_percent": 40})
    assert "Traceback" not in server.log.read_text()
