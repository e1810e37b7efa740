"""Losing the broker: a REST request is never held by a publish, every node socket hears ``sync``
once the channel layer is back, a channel left in a group does not wedge a process's delivery, and
the room messages waiting for the broker are bounded."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
from django.conf import settings

from nodes.metrics import _room_message_lines
from tests.conftest import requires_services
from tests.ops import services
from tests.realtime.conftest import _daphne
from tests.realtime.helpers import ABSENT_BROKER, apart, create_task, make_run, make_user, token
from tests.realtime.live import Daphne
from vantage6.layers import RabbitmqChannelLayer, dropped

pytestmark = pytest.mark.live  # those on a broker of their own: ONE_DEPLOYMENT_AT_A_TIME too


def _publish(layer: RabbitmqChannelLayer, count: int) -> None:
    for number in range(count):
        layer.publish_soon("room", {"type": "m", "n": number})


def test_room_messages_waiting_for_an_absent_broker_are_bounded_the_oldest_dropped(caplog):
    async def wait() -> tuple[list[int], int]:
        layer = RabbitmqChannelLayer(host=ABSENT_BROKER, **settings.RABBITMQ_LAYER_CONFIG)
        layer.backlog_limit = 5
        before = dropped()
        try:
            _publish(layer, 8)
            return [message["n"] for _, message in layer._backlog], dropped() - before
        finally:
            await layer.close()

    with caplog.at_level(logging.WARNING, logger="vantage6.layers"):
        waiting, lost = asyncio.run(wait())

    assert waiting == [3, 4, 5, 6, 7] and lost == 3
    assert f'vantage6_socket_room_messages_total{{direction="dropped"}} {dropped()}' in _room_message_lines()
    assert [record.message for record in caplog.records if record.name == "vantage6.layers"] == [
        "the broker is away and 5 room messages wait for it: the oldest are dropped"
    ]


@requires_services("rabbitmq")
def test_a_channel_left_in_a_group_does_not_wedge_delivery():
    config = settings.RABBITMQ_LAYER_CONFIG
    expiry = config["local_expiry"]

    async def deliver() -> list[int]:
        # Few slots, so that the leaked channel's messages would fill them all.
        layer = RabbitmqChannelLayer(host=os.environ["V6_RABBITMQ_URI"], **{**config, "local_capacity": 5})
        try:
            leaked, live = await layer.new_channel(), await layer.new_channel()
            await layer.group_add("leaky", leaked)  # its group_discard failed: nobody reads it any more
            await layer.group_add("leaky", live)
            for number in range(20):
                await layer.group_send("leaky", {"type": "m", "n": number})
            return [(await asyncio.wait_for(layer.receive(live), 3 * expiry))["n"] for _ in range(20)]
        finally:
            await layer.close()

    assert asyncio.run(deliver()) == list(range(20))


@pytest.fixture
def broker(private_rabbitmq):
    return private_rabbitmq


@pytest.fixture
def server_on_broker(live_db, live_folder, broker):
    for daphne in _daphne(live_db, live_folder, V6_RABBITMQ_URI=broker.url):
        yield daphne
        daphne.show_log()


def _timed_task(host: str, user, collaboration) -> tuple[int, float]:
    started = time.monotonic()
    task_id = create_task(host, user, collaboration)
    return task_id, time.monotonic() - started


@services.ONE_DEPLOYMENT_AT_A_TIME
def test_broker_restart_while_nodes_are_connected(server_on_broker, broker, live_world, sockets):
    host = server_on_broker.url
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    node = sockets(host, token(live_world.node_a))  # upgrades to websocket
    node.wait_ready(live_world.node_a)
    polling = sockets(host, token(live_world.node_b), transports=["polling"])
    polling.wait_joined()  # its rooms again

    broker.kill()
    try:  # the broker back whatever happens: the next tests of the module need it
        during, elapsed = _timed_task(host, researcher, live_world.collab_ab)
    finally:
        broker.start()
    # Its events wait for the broker, the request does not (one that waited would be held until the broker
    # is back, started only after it answered); the task is stored. Its own time on a loaded machine
    # passes 1 s at times.
    assert elapsed < 5

    # The layer is back: each node hears sync, on which it lists its open runs, the task of the outage
    # among them. Neither reconnected: a session lives in its process, which served it meanwhile.
    for socket in (node, polling):
        socket.wait_for("sync", timeout=30)
    assert node.transport == "websocket"
    after, _ = _timed_task(host, researcher, live_world.collab_ab)
    for socket in (node, polling):
        assert socket.wait_for("new_task", where=lambda data: data["id"] == after) == {
            "id": after,
            "parent_id": None,
        }
    assert during != after


@services.ONE_DEPLOYMENT_AT_A_TIME
def test_room_messages_that_waited_for_the_broker_go_out_in_order_once_it_is_back(broker):
    async def outage() -> tuple[list[int], int]:
        layer = RabbitmqChannelLayer(host=broker.url, **settings.RABBITMQ_LAYER_CONFIG)
        layer.backlog_limit = 5
        try:
            channel = await layer.new_channel()
            await layer.group_add("room", channel)
            await asyncio.to_thread(broker.kill)
            while layer.connected:
                await asyncio.sleep(0.05)
            before = dropped()
            _publish(layer, 8)
            lost = dropped() - before
            await asyncio.to_thread(broker.start)
            heard = [(await asyncio.wait_for(layer.receive(channel), 60))["n"] for _ in range(5)]
            with pytest.raises(TimeoutError):  # nothing more
                await asyncio.wait_for(layer.receive(channel), 0.5)
            return heard, lost
        finally:
            await layer.close()

    assert asyncio.run(outage()) == ([3, 4, 5, 6, 7], 3)


@services.ONE_DEPLOYMENT_AT_A_TIME
def test_sibling_processes_pass_their_events_while_the_broker_restarts(
    broker, live_db, live_folder, live_world, sockets
):
    server = Daphne(live_db.process_env(V6_RABBITMQ_URI=broker.url), live_folder, workers=2)
    try:
        sender, listener = apart(sockets, server.url, token(live_world.node_a), token(live_world.node_b))
        sender.wait_ready(live_world.node_a)
        listener.wait_ready(live_world.node_b)
        run = make_run(live_world)

        def status_change(status: str) -> None:
            sender.emit("algorithm_status_change", {"run_id": run.pk, "status": status})
            for socket in (sender, listener):
                assert socket.wait_for("algorithm_status_change")["status"] == status

        status_change("active")
        broker.kill()
        status_change("completed")  # between the processes of one server the broker is not needed
        broker.start()
        for socket in (sender, listener):
            socket.wait_for("sync", timeout=30)  # each process has its broker back
        status_change("failed")
        for socket in (sender, listener):  # each event once
            assert [name for name, _ in socket.received(0.5) if name == "algorithm_status_change"] == []
    finally:
        server.stop()
        server.show_log()
