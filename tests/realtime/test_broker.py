"""Losing the broker: a REST request is never held by a publish, every node socket hears ``sync``
once the channel layer is back, and a channel left in a group does not wedge a process's delivery."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import requires_services
from tests.ops import services
from tests.realtime.conftest import _daphne
from tests.realtime.helpers import create_task, make_user, token
from vantage6.layers import RabbitmqChannelLayer

pytestmark = pytest.mark.live


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


@pytest.fixture(scope="module")
def broker():
    if reason := services.available():
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="v6-broker-") as folder:
        rabbitmq = services.PrivateService("rabbitmq", Path(folder))
        try:
            rabbitmq.start()
            yield rabbitmq
        finally:
            rabbitmq.kill()
            rabbitmq.stop()


@pytest.fixture
def server_on_broker(live_db, live_folder, broker):
    for daphne in _daphne(live_db, live_folder, V6_RABBITMQ_URI=broker.url):
        yield daphne
        daphne.show_log()


def _timed_task(host: str, user, collaboration) -> tuple[int, float]:
    started = time.monotonic()
    task_id = create_task(host, user, collaboration)
    return task_id, time.monotonic() - started


def test_broker_restart_while_nodes_are_connected(server_on_broker, broker, live_world, sockets):
    host = server_on_broker.url
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    node = sockets(host, token(live_world.node_a))  # upgrades to websocket
    node.wait_ready(live_world.node_a)
    polling = sockets(host, token(live_world.node_b), transports=["polling"])
    polling.wait_for("message", where=lambda text: "joined room" in text)  # its rooms again

    broker.kill()
    during, elapsed = _timed_task(host, researcher, live_world.collab_ab)
    assert elapsed < 1  # its events wait for the broker, the request does not; the task is stored
    broker.start()

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
