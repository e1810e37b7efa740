"""Several server instances behind no sticky routing, sharing the database and RabbitMQ."""

from __future__ import annotations

import signal
import time

import pytest
import requests
import websocket

from accounts.models import Authenticatable
from nodes.events import collaboration_room, emit
from nodes.models import SocketConnection
from tests.conftest import requires_services
from tests.realtime.helpers import (
    PollingSession,
    create_task,
    eventually,
    expired_token,
    foreign_token,
    log_in,
    make_user,
    token,
    user_socket,
)
from tests.realtime.live import LIVE, Daphne
from tests.realtime.upgrade import upgraded

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["default", "polling"])
def test_rest_call_to_one_instance_reaches_a_node_on_the_other(instances, live_world, sockets, transports):
    a, b = instances
    node = sockets(a.url, token(live_world.node_a), transports=transports)
    node.wait_ready(live_world.node_a)
    researcher = make_user(live_world.org_b, roles=("Researcher",))

    task_id = create_task(b.url, researcher, live_world.collab_ab)

    assert node.wait_for("new_task") == {"id": task_id, "parent_id": None}


def test_polling_requests_may_alternate_between_instances(instances, live_world):
    a, b = instances
    session = PollingSession([a.url, b.url], token(live_world.node_a))  # handshake on a
    session.send("40/tasks,{}")  # on b
    room = f"collaboration_{live_world.collab_ab.pk}_organization_{live_world.org_a.pk}"
    joined = ["message", f"{live_world.node_a.name} joined room {room}"]
    events = []
    while joined not in events:
        events += session.events(0.5)
    assert events[0] == ["sync"]

    researcher = make_user(live_world.org_a, roles=("Researcher",))
    task_id = create_task(a.url, researcher, live_world.collab_ab)
    started = time.monotonic()
    while ["new_task", {"id": task_id, "parent_id": None}] not in events:
        events += session.events(0.5)
        assert time.monotonic() - started < 10

    # Longer than pingInterval + pingTimeout: PINGs come from both instances, PONGs go to both.
    session.events(5)
    session.send('42/tasks,["ping"]')  # the session is alive: its requests are answered


def test_upgrade_to_websocket_on_another_instance(instances, live_world):
    a, b = instances
    polling = PollingSession([a.url], token(live_world.node_a))
    with upgraded(polling, b.port) as ws:  # the GET waiting on a is released by the upgrade on b
        assert ws.recv() == '42/tasks,["sync"]'
        room = f"collaboration_{live_world.collab_ab.pk}_organization_{live_world.org_a.pk}"
        while not ws.recv().endswith(f'joined room {room}"]'):
            pass

        task_id = create_task(a.url, make_user(live_world.org_a, roles=("Researcher",)), live_world.collab_ab)

        expected = f'42/tasks,["new_task",{{"id":{task_id},"parent_id":null}}]'
        while (packet := ws.recv()) != expected:
            assert packet.startswith(("42/tasks,", "2")), packet
            if packet == "2":
                ws.send("3")


UNUSABLE_TOKENS = pytest.mark.parametrize(
    "make_token, event", [(expired_token, "expired_token"), (foreign_token, "invalid_token")]
)


@UNUSABLE_TOKENS
def test_an_unauthenticated_session_upgrades_on_another_instance(instances, live_world, make_token, event):
    a, b = instances
    polling = PollingSession([a.url], make_token(live_world.node_a))  # kept in a's memory only
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{b.port}/socket.io/?EIO=4&transport=websocket&sid={polling.sid}", timeout=10
    )
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        ws.send("5")
        ws.send("40/tasks,{}")
        assert ws.recv().startswith('40/tasks,{"sid":')
        assert ws.recv() == f'42/tasks,["{event}"]'
    finally:
        ws.close()


@UNUSABLE_TOKENS
def test_an_unauthenticated_session_is_polled_on_another_instance(instances, live_world, make_token, event):
    a, b = instances
    session = PollingSession([a.url], make_token(live_world.node_a))
    session.hosts = [b.url]  # every request after the handshake lands on b

    session.send("40/tasks,{}")

    packets = session.poll()
    assert packets[0].startswith('40/tasks,{"sid":')
    assert f'42/tasks,["{event}"]' in packets or [event] in session.events(3)


@pytest.fixture
def node_a_token(live_world) -> str:
    """Made before ``db`` wraps the test, which keeps it off the live database (the login's row)."""
    return token(live_world.node_a)


def test_emit_from_synchronous_code_works_every_time(
    instances,
    live_world,
    sockets,
    node_a_token,
    db,  # noqa: ARG001 - after live_world: the test database is wrapped only once the live data is in
    django_capture_on_commit_callbacks,
):
    node = sockets(instances[1].url, node_a_token)
    node.wait_ready(live_world.node_a)
    room = collaboration_room(live_world.collab_ab.pk)

    for number in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            emit(
                "kill_containers", {"node_id": number, "collaboration_id": live_world.collab_ab.pk}, room=room
            )

        assert node.wait_for("kill_containers")["node_id"] == number


def test_another_instance_ends_the_connections_of_a_dead_one(
    live_db, live_folder, instances, live_world, sockets
):
    a, _ = instances
    doomed = Daphne(live_db.process_env(V6_RABBITMQ_URI=a.env["V6_RABBITMQ_URI"]), live_folder)
    watching = user_socket(sockets, a.url, live_world.org_a)
    node = sockets(doomed.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    node.client.reconnection = False
    held = SocketConnection.objects.using(LIVE).filter(identity_id=live_world.node_a.pk)
    assert held.exists()  # recorded with the process holding it before the last join
    status = Authenticatable.objects.using(LIVE).filter(pk=live_world.node_a.pk)
    node.emit("ping")  # as a node does after its connect: its heartbeats stop with the process
    assert eventually(lambda: status.get().last_seen is not None)

    doomed.process.send_signal(signal.SIGKILL)  # no disconnect handling at all
    doomed.process.wait()

    # Heartbeat timeout (3 s) on the surviving instance's sweep, or the burial of the dead process
    # (13 s of silence), marks the node offline (bounded generously: a loaded machine delays both).
    assert eventually(lambda: status.get().status == "offline", timeout=30)
    # Whichever did tells the users with the status, not only once the other comes.
    assert watching.wait_for("node-offline", timeout=5)["id"] == live_world.node_a.pk
    assert eventually(lambda: not held.exists(), timeout=30)  # buried
    assert "node-offline" not in [name for name, _ in watching.received(2)]  # and told once


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
def test_a_login_ended_on_one_instance_revokes_the_socket_on_the_other(
    instances, live_world, sockets, transports
):
    a, b = instances
    node = live_world.node_a
    socket = sockets(a.url, log_in(a.url, node), transports=transports)
    socket.wait_ready(node)
    witness = sockets(a.url, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    admin = make_user(live_world.org_a, roles=("Root",))

    reset = requests.post(
        f"{b.url}/api/recover/node",
        json={"id": node.pk},
        headers={"Authorization": f"Bearer {token(admin)}"},
        timeout=10,
    )
    assert reset.status_code == 200

    socket.wait_for("invalid_token", timeout=5)
    researcher = make_user(live_world.org_b, roles=("Researcher",))
    task_id = create_task(b.url, researcher, live_world.collab_ab, [live_world.org_b])
    assert witness.wait_for("new_task") == {"id": task_id, "parent_id": None}
    assert "new_task" not in [name for name, _ in socket.received(1)]
    assert not Authenticatable.objects.using(LIVE).filter(pk=node.pk, status="online").exists()
