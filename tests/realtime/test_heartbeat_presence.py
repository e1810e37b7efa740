"""The users of a node's rooms hear of every change of its status, whoever makes it: the heartbeat sweep
that marks a silent node offline, and the heartbeat that brings it back."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from tests.realtime.helpers import eventually, token, user_socket
from tests.realtime.live import LIVE


@pytest.mark.live
def test_a_node_whose_heartbeats_stop_and_resume_is_announced_offline_and_online(server, live_world, sockets):
    node_a = live_world.node_a
    notice = {"id": node_a.pk, "name": node_a.name, "org_id": node_a.organization_id}
    watching = user_socket(sockets, server.url, live_world.org_a)
    node = sockets(server.url, token(node_a))
    node.wait_ready(node_a)
    assert watching.wait_for("node-online") == notice
    status = Authenticatable.objects.using(LIVE).filter(pk=node_a.pk)
    node.emit("ping")
    assert eventually(lambda: status.get().last_seen is not None)

    # No heartbeat for NODE_HEARTBEAT_TIMEOUT (3 s): the sweep marks it offline, and says so.
    assert watching.wait_for("node-offline", timeout=20) == notice
    assert status.get().status == "offline"

    node.emit("ping")

    assert watching.wait_for("node-online") == notice
    assert status.get().status == "online"
