"""A node dropped by a gracefully stopping process reconnects to another one; python-socketio waits 1 s for
the acknowledgement of that connect and, when it is late (a loaded server), gives the connect up: it closes
the session the server admitted and tries again about 2 s later. The node held no socket meanwhile, but the
stop was no failure of its: the connection the stopping process dropped is on record again, so that the
close announces no ``node-offline`` and the node stays online until its retry (or until the stopped
process is buried, if the node never comes back)."""

from __future__ import annotations

import os

import pytest
from django.utils import timezone

from accounts.models import Authenticatable
from nodes.consumers import connected, went_offline
from nodes.models import SocketConnection, SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, hears, make_user, token
from tests.realtime.live import HOOKED, LIVE, LONG_PINGS, hooked_servers, open_tasks_socket

ACK = '40/tasks,{"sid":'


@pytest.fixture
def servers(live_db, live_folder):
    """A plain server process (to be stopped) and a hooked one, on RabbitMQ, with long pings: the test
    reads a socket only when it waits for a frame."""
    env = {
        "V6_RABBITMQ_URI": os.environ["V6_RABBITMQ_URI"],
        **LONG_PINGS,
    }
    with hooked_servers(live_db, live_folder, [None, HOOKED], **env) as (folder, servers):
        yield folder, *servers


@pytest.mark.live
@requires_services("rabbitmq")
@pytest.mark.usefixtures("broker_only")
def test_a_reconnect_given_up_after_a_graceful_stop_keeps_the_node_online(servers, live_world):
    folder, stopping, survivor = servers
    node = live_world.node_a
    record = SocketConnection.objects.using(LIVE).filter(identity_id=node.pk)
    witness = open_tasks_socket(
        survivor.port, token(make_user(live_world.org_b, event_scope="COLLABORATION"))
    )
    sockets = [witness]
    armed, held = folder / f"{survivor.port}.hold-identified", folder / f"{survivor.port}.identified"
    try:
        assert hears(witness, lambda frame: frame.startswith(ACK), 10)
        sockets.append(first := open_tasks_socket(stopping.port, token(node)))
        assert hears(first, lambda frame: frame.startswith(ACK), 10)
        stopped_process = record.get().process
        stopping.stop()  # SIGTERM: the node's socket is dropped, the node stays online

        armed.touch()  # the acknowledgement of the reconnect comes late
        sockets.append(given_up := open_tasks_socket(survivor.port, token(node)))
        assert eventually(held.exists)  # admitted: its connection replaced the dropped one on record
        given_up.close()  # the client gave the connect up
        armed.unlink()

        assert not hears(witness, lambda frame: '"node-offline"' in frame, 2)
        assert Authenticatable.objects.using(LIVE).get(pk=node.pk).status == "online"
        assert record.get().process == stopped_process  # buried with it, unless the node comes back

        sockets.append(retry := open_tasks_socket(survivor.port, token(node)))
        assert hears(retry, lambda frame: frame.startswith(ACK), 10)
        assert record.get().process != stopped_process
    finally:
        armed.unlink(missing_ok=True)
        for ws in sockets:
            ws.close()


def _replaced_on(process: str, node_id: int) -> str:
    """A connection of the node on ``process``, replaced by one on another: the generation of the newer."""
    connected(node_id, process)
    generation, _ = connected(node_id, "survivor")
    Authenticatable.objects.filter(pk=node_id).update(status="online")
    return generation


@pytest.mark.django_db
def test_the_close_of_a_socket_that_replaced_a_buried_process_s_marks_the_node_offline(world):
    """A stopped process buried meanwhile holds no connection: none is put back on record for it."""
    node = world.node_a
    newer = _replaced_on("stopped", node.pk)  # no liveness row: buried

    assert went_offline({"id": node.pk, "kind": "node", "generation": newer}, ["stopped"]) is True

    assert Authenticatable.objects.get(pk=node.pk).status == "offline"
    assert not SocketConnection.objects.filter(identity_id=node.pk).exists()


@pytest.mark.django_db
def test_only_a_connection_of_a_stopped_process_is_put_back_on_record(world):
    node = world.node_a
    SocketProcess.objects.create(id="alive", beat_at=timezone.now())
    newer = _replaced_on("alive", node.pk)

    assert went_offline({"id": node.pk, "kind": "node", "generation": newer}, ["stopped"]) is True

    SocketProcess.objects.create(id="stopped", beat_at=timezone.now())
    newer = _replaced_on("stopped", node.pk)

    assert went_offline({"id": node.pk, "kind": "node", "generation": newer}, ["stopped"]) is False

    assert SocketConnection.objects.get(identity_id=node.pk).process == "stopped"
    assert Authenticatable.objects.get(pk=node.pk).status == "online"
