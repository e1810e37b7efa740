"""Presence (``node-online``/``node-offline``, join/leave ``message``) reaches the user sockets of a room
and the joiner itself, never the other nodes; and only the newest connection of an identity may mark
it offline."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from accounts.tokens import decode
from nodes.consumers import identify, went_offline
from nodes.models import NodeConfig
from tests.realtime.helpers import token, user_socket

PRESENCE = {"node-online", "node-offline", "message"}


@pytest.mark.live
def test_a_node_connecting_and_leaving_sends_no_frame_to_the_other_nodes(server, live_world, sockets):
    watching = user_socket(sockets, server.url, live_world.org_a)
    other = sockets(server.url, token(live_world.node_b))
    other.wait_ready(live_world.node_b)
    node_a = live_world.node_a
    notice = {"id": node_a.pk, "name": node_a.name, "org_id": node_a.organization_id}

    node = sockets(server.url, token(node_a))
    node.wait_ready(node_a)  # its own sync and join messages
    assert watching.wait_for("node-online", where=lambda data: data["id"] == node_a.pk) == notice
    node.close()
    assert watching.wait_for("node-offline") == notice

    assert [name for name, _ in other.received(1) if name in PRESENCE] == []


def _identity(node) -> dict:
    access = token(node)
    return identify({"claims": decode(access)}, "a-process")


@pytest.mark.django_db
def test_the_disconnect_of_an_older_connection_leaves_the_node_online(world):
    node = world.node_a
    old = _identity(node)
    new = _identity(node)  # reconnected before the old session's disconnect ran
    NodeConfig.objects.create(node=node, key="encryption", value="false")

    assert went_offline(old) is False

    assert Authenticatable.objects.get(pk=node.pk).status == "online"
    assert NodeConfig.objects.filter(node=node).exists()
    assert went_offline(new) is True
    assert Authenticatable.objects.get(pk=node.pk).status == "offline"
    assert not NodeConfig.objects.filter(node=node).exists()
