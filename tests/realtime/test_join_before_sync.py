"""A node is in its rooms before it is told to ``sync``: a task made right after its listing of open runs
reaches it as an event (the other order lost it for good while the joins were under way)."""

from __future__ import annotations

import pytest

from nodes.consumers import server
from nodes.events import TASKS_NAMESPACE, collaboration_room
from tests.realtime.helpers import in_memory, token
from vantage6.socketio.server import Socket
from vantage6.socketio.store import POLLING


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside one
def test_a_task_made_as_the_node_hears_sync_reaches_it(world, monkeypatch):
    room = collaboration_room(world.collab_ab.pk)
    emit = Socket.emit

    async def emit_then_publish(socket: Socket, event: str, data: object = None) -> None:
        await emit(socket, event, data)
        if event == "sync":  # the node lists its open runs at once; a task is made just after
            await server.emit("new_task", {"id": 7, "parent_id": None}, room=room, namespace=TASKS_NAMESPACE)

    monkeypatch.setattr(Socket, "emit", emit_then_publish)
    monkeypatch.setattr(server, "ensure_housekeeping", lambda: None)  # not what is looked at here

    headers = {"authorization": f"Bearer {token(world.node_a)}"}

    async def scenario() -> list[str]:
        session, _ = await server.open_session(POLLING, headers)
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
        return session.outbox

    outbox = in_memory(scenario)

    assert [packet for packet in outbox if '"new_task"' in packet] != []
