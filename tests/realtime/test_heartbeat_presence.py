"""The users of a node's rooms hear of every change of its status, whoever makes it: the heartbeat sweep
that marks a silent node offline, and the heartbeat that brings it back."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from tests.realtime.helpers import eventually, make_user, token, user_socket
from tests.realtime.live import LIVE
from tests.realtime.test_socket_rights import _call


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


@pytest.mark.live
def test_a_silent_node_whose_organization_left_the_collaboration_is_not_announced_there(
    server, live_world, sockets
):
    """The members of a collaboration heard the node leave its rooms when its organization left; that it
    falls silent later is no longer theirs to hear (the sweep tells the rooms the node holds, as the
    node's own connect and disconnect do)."""
    node_a, node_b = live_world.node_a, live_world.node_b
    watching = user_socket(sockets, server.url, live_world.org_a)
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    nodes = {node.pk: sockets(server.url, token(node)) for node in (node_a, node_b)}
    for node in (node_a, node_b):
        nodes[node.pk].wait_ready(node)
        nodes[node.pk].emit("ping")
    url = f"{server.url}/api/collaboration/{live_world.collab_ab.pk}/organization"
    _call("DELETE", url, admin, id=live_world.org_b.pk)
    try:
        assert watching.wait_for("node-offline", where=lambda data: data["id"] == node_b.pk)
        # No heartbeat for NODE_HEARTBEAT_TIMEOUT (3 s): the sweep marks both offline.
        statuses = Authenticatable.objects.using(LIVE).filter(pk__in=nodes).values_list("status", flat=True)
        assert eventually(lambda: list(statuses.all()) == ["offline", "offline"], timeout=20)
        # The sweep tells the rooms as soon as it marked the nodes: what it says is heard within a second.
        heard = [data["id"] for name, data in watching.received(1) if name == "node-offline"]
    finally:
        _call("POST", url, admin, id=live_world.org_b.pk)

    assert heard == [node_a.pk]
