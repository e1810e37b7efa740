"""A long-polling GET costs no channel-layer group binding: the wake-up of its packets reaches it
through the one group every server process listens on."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import HttpCommunicator
from django.test import override_settings

from nodes.consumers import server
from nodes.events import TASKS_NAMESPACE
from tests.realtime.helpers import token
from vantage6.socketio import packets as p
from vantage6.socketio.consumers import PollingConsumer
from vantage6.socketio.store import POLLING

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside one
def test_a_waiting_get_is_woken_without_a_group_binding(world, monkeypatch):
    monkeypatch.setattr(server, "ensure_housekeeping", lambda: None)
    session, _ = server.open_session(POLLING, {"authorization": f"Bearer {token(world.node_a)}"})
    path = f"/socket.io/?EIO=4&transport=polling&sid={session.sid}"
    bindings: list[str] = []

    async def scenario() -> dict:
        # Only the passing on of wake-ups: the periodic work is not what is looked at here.
        server.listening = asyncio.Event()
        listener = asyncio.create_task(server._pass_wake_ups())
        await server.listening.wait()
        layer = server.layer
        group_add, group_discard = layer.group_add, layer.group_discard

        async def counted_add(group: str, channel: str) -> None:
            bindings.append(f"+{group}")
            await group_add(group, channel)

        async def counted_discard(group: str, channel: str) -> None:
            bindings.append(f"-{group}")
            await group_discard(group, channel)

        layer.group_add, layer.group_discard = counted_add, counted_discard
        get = HttpCommunicator(PollingConsumer.as_asgi(server=server), "GET", path)
        response = asyncio.create_task(get.get_response(timeout=10))
        await asyncio.sleep(0.5)  # the GET waits: nothing is queued
        await server.send(session, [p.event_packet(TASKS_NAMESPACE, "hello")])
        try:
            return await response
        finally:
            listener.cancel()

    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        channel_layers.backends.clear()
        try:
            response = async_to_sync(scenario)()
        finally:
            channel_layers.backends.clear()

    assert response["status"] == 200
    assert response["body"].decode() == f'42{TASKS_NAMESPACE},["hello"]'
    assert bindings == []
