"""An event published while a long-polling session upgrades to websocket reaches it exactly once."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from nodes.consumers import server
from nodes.events import TASKS_NAMESPACE, collaboration_room
from tests.realtime.helpers import in_memory, token
from vantage6.socketio.consumers import WebsocketConsumer
from vantage6.socketio.store import POLLING


def _new_task_ids(frames: list[str]) -> list[int]:
    prefix = f"42{TASKS_NAMESPACE},"
    events = [json.loads(frame[len(prefix) :]) for frame in frames if frame.startswith(prefix)]
    return [data["id"] for name, *rest in events if name == "new_task" for data in rest]


async def _upgrade(sid: str) -> list[str]:
    path = f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
    socket = WebsocketCommunicator(WebsocketConsumer.as_asgi(server=server), path)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_to("2probe")
    assert await socket.receive_from() == "3probe"
    await socket.send_to("5")
    frames = []
    while not await socket.receive_nothing(timeout=1):
        frames.append(await socket.receive_from())
    await socket.disconnect(timeout=10)
    return frames


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside one
def test_events_published_during_the_upgrade_arrive_once(world, monkeypatch):
    room = collaboration_room(world.collab_ab.pk)
    original = server.upgraded

    async def upgraded(session, sink) -> None:
        # Published just before the switch (queued for polling by then) and just after it.
        await server.emit("new_task", {"id": 1, "parent_id": None}, room=room, namespace=TASKS_NAMESPACE)
        await asyncio.sleep(0.1)
        assert session.outbox
        await original(session, sink)
        await server.emit("new_task", {"id": 2, "parent_id": None}, room=room, namespace=TASKS_NAMESPACE)

    monkeypatch.setattr(server, "upgraded", upgraded)
    monkeypatch.setattr(server, "ensure_housekeeping", lambda: None)  # not what is looked at here
    headers = {"authorization": f"Bearer {token(world.node_a)}"}

    async def scenario() -> list[str]:
        session, _ = await server.open_session(POLLING, headers)
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")  # connected over polling: in its rooms
        return await _upgrade(session.sid)

    frames = in_memory(scenario)

    assert _new_task_ids(frames) == [1, 2]
