"""Presence (``node-online``, ``node-offline``, join and leave ``message``) of a collaboration reaches the
user sockets that may hear its events, and stops for a user whose right is withdrawn while connected:
the presence rooms follow the rights as the event rooms do."""

from __future__ import annotations

import pytest
import requests

from tests.realtime.helpers import make_user, token
from tests.realtime.test_socket_rights import _call, left

PRESENCE = {"node-online", "node-offline", "message"}


@pytest.mark.live
def test_a_user_whose_right_is_withdrawn_hears_no_more_presence_of_the_collaboration(
    server, live_world, sockets
):
    ab, node_b = live_world.collab_ab.pk, live_world.node_b
    listener = make_user(live_world.org_a, event_scope="COLLABORATION")
    socket = sockets(server.url, token(listener))
    socket.wait_joined()
    witness = sockets(server.url, token(make_user(live_world.org_a, event_scope="COLLABORATION")))
    witness.wait_joined()
    admin = token(make_user(live_world.org_a, roles=("Root",)))

    _call("PATCH", f"{server.url}/api/user/{listener.pk}", admin, rules=[])
    socket.wait_for("message", where=left(f"collaboration_{ab}"), timeout=5)
    node = sockets(server.url, token(node_b))
    node.wait_ready(node_b)
    witness.wait_for("node-online", where=lambda data: data["id"] == node_b.pk)  # presence was sent
    node.close()
    witness.wait_for("node-offline", where=lambda data: data["id"] == node_b.pk)

    assert [name for name, _ in socket.received(1) if name in PRESENCE] == []


@pytest.mark.live
def test_a_node_with_another_socket_here_stays_online_when_its_newer_socket_closes(
    server, live_world, sockets
):
    node_a = live_world.node_a
    watching = sockets(server.url, token(make_user(live_world.org_a, event_scope="COLLABORATION")))
    watching.wait_joined()
    older = sockets(server.url, token(node_a))
    older.wait_ready(node_a)
    newer = sockets(server.url, token(node_a))  # a second socket of the node on the same server
    newer.wait_ready(node_a)
    admin = token(make_user(live_world.org_a, roles=("Root",)))

    newer.close()
    watching.wait_for("message", where=left(f"collaboration_{live_world.collab_ab.pk}"))

    assert "node-offline" not in [name for name, _ in watching.received(1.5)]
    answer = requests.get(
        f"{server.url}/api/node/{node_a.pk}", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert answer.json()["status"] == "online"
