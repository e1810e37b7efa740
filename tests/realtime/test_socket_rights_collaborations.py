"""A socket whose user hears every collaboration (the global event rule) follows the collaborations that
are created and deleted while it is connected, without reconnecting."""

from __future__ import annotations

import uuid

import pytest
import requests

from collaborations.models import Collaboration
from nodes.models import Node
from tests.realtime.helpers import create_task, joined, make_user, token
from tests.realtime.live import LIVE
from tests.realtime.test_socket_rights import _call, left

live = pytest.mark.live


@live
def test_a_user_who_hears_every_collaboration_follows_one_created_and_deleted_while_connected(
    server, live_world, sockets
):
    user = make_user(live_world.org_c, event_scope="GLOBAL")
    socket = sockets(server.url, token(user))
    socket.wait_joined()
    admin = token(make_user(live_world.org_a, roles=("Root",)))

    name = f"new-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "organization_ids": [live_world.org_a.pk], "encrypted": False}
    response = requests.post(
        f"{server.url}/api/collaboration", json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    created = Collaboration.objects.using(LIVE).get(pk=response.json()["id"])

    room = f"collaboration_{created.pk}"
    socket.wait_for("message", where=lambda text: joined(text) and text.endswith(f"room {room}"), timeout=5)
    node = Node(name=f"node-{name}", organization=live_world.org_a, collaboration=created)
    node.set_api_key(str(uuid.uuid4()))
    node.save(using=LIVE)  # a task needs a node of each of its organizations
    task_id = create_task(server.url, make_user(live_world.org_a, roles=("Researcher",)), created)
    assert socket.wait_for("new_task") == {"id": task_id, "parent_id": None}

    _call("DELETE", f"{server.url}/api/collaboration/{created.pk}?delete_dependents=1", admin)

    socket.wait_for("message", where=left(room), timeout=5)
