"""What a client socket sends is an event of its namespace, never a message between server processes:
events named and shaped like those (a recheck, its confirmation, a room's packets, a takeover) join no
room and deliver nothing."""

from __future__ import annotations

import pytest

from tests.realtime.helpers import token, user_socket
from tests.realtime.test_socket_attacks import _run, _status

pytestmark = pytest.mark.live

INTERNAL = [
    "sio.recheck",
    "sio.rechecked",
    "eio.packets",
    "eio.takeover",
    "eio.forward",
    "eio.hello",
    "recheck",
]


@pytest.mark.parametrize("sender", ["user", "node"])
def test_events_named_as_messages_between_processes_reach_no_room(server, live_world, sockets, sender):
    watcher = user_socket(sockets, server.url, live_world.org_c, "GLOBAL")
    user = user_socket(sockets, server.url, live_world.org_a)
    node_a = sockets(server.url, token(live_world.node_a))
    node_a.wait_ready(live_world.node_a)
    node_c = sockets(server.url, token(live_world.node_c))
    node_c.wait_ready(live_world.node_c)
    attacker = user if sender == "user" else node_a
    room = f"collaboration_{live_world.collab_c.pk}"
    forged_packet = '2/tasks,["new_task",{"id":1,"parent_id":null}]'

    for event in INTERNAL:
        attacker.emit(event, {"type": event, "owners": None, "process": "x", "reply": "x", "sid": "x"})
        attacker.emit(event, {"type": event, "group": f"/tasks|{room}", "packets": [forged_packet]})
        attacker.emit(event, room)
    run = _run(live_world.org_c, live_world.collab_c)
    node_c.emit("algorithm_status_change", _status(run))

    assert watcher.wait_for("algorithm_status_change")["run_id"] == run.pk
    for socket in (user, node_a):
        assert [
            name for name, _ in socket.received(1) if name in ("algorithm_status_change", "new_task")
        ] == []
