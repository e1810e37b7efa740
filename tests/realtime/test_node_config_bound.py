"""A node's shared configuration (``node_info_update``) is kept up to 1000 rows, its policies (sent first)
among them. A node that shared a list of 400000 items had as many rows written for each report, for half
a minute, on the thread that serves the events of every node of the process (their heartbeats, their
status reports), and could send 200 such reports at once."""

from __future__ import annotations

import pytest

from nodes.models import NodeConfig
from tests.realtime.helpers import eventually, token
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live


def test_a_configuration_is_kept_up_to_its_bound(server, live_world, sockets):
    node_a = live_world.node_a
    node = sockets(server.url, token(node_a))
    node.wait_ready(node_a)
    rows = NodeConfig.objects.using(LIVE).filter(node_id=node_a.pk)

    node.emit(
        "node_info_update",
        {"allowed_users": [7, 8], "database_columns": {"columns_wide": [f"c{i}" for i in range(5000)]}},
    )

    assert eventually(rows.exists)  # written in one transaction
    assert rows.count() == 1000
    assert sorted(rows.filter(key="allowed_users").values_list("value", flat=True)) == ["7", "8"]
