"""What a node's connection costs, counted around a real ASGI conversation: the handshake, the
namespace connect and the upgrade together at most five SQL statements, the disconnect six (its
transaction: the status, the connection row, the node's configuration and metrics); a long-polling GET or
POST none, and no channel-layer group binding."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.db import connections
from django.test.utils import CaptureQueriesContext

from accounts.permissions import nodes_with_rules, principal_for_node
from accounts.sessions import start_login
from nodes.consumers import server
from nodes.events import TASKS_NAMESPACE
from nodes.models import Node
from tests.realtime.helpers import in_memory, token
from vantage6.socketio import packets as p
from vantage6.socketio.consumers import PollingConsumer, WebsocketConsumer


def _polling(method: str, sid: str | None = None, body: bytes = b"", headers=()) -> HttpCommunicator:
    path = "/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
    return HttpCommunicator(PollingConsumer.as_asgi(server=server), method, path, body=body, headers=headers)


class _Conversation:
    """A node's Socket.IO conversation in steps, with the SQL statements and group bindings of each."""

    def __init__(self, bearer: str) -> None:
        self.bearer = bearer
        self.sid = ""
        self.websocket: WebsocketCommunicator | None = None
        self.bindings: list[str] = []

    def count(self) -> None:
        layer = server.layer
        group_add, group_discard = layer.group_add, layer.group_discard

        async def counted_add(group: str, channel: str) -> None:
            self.bindings.append(f"+{group}")
            await group_add(group, channel)

        async def counted_discard(group: str, channel: str) -> None:
            self.bindings.append(f"-{group}")
            await group_discard(group, channel)

        layer.group_add, layer.group_discard = counted_add, counted_discard

    async def connect(self) -> list[str]:
        """Handshake over polling, namespace connect, the GET of its answers, the upgrade."""
        headers = [(b"authorization", f"Bearer {self.bearer}".encode())]
        opened = await _polling("GET", headers=headers).get_response(timeout=10)
        self.sid = json.loads(opened["body"][1:])["sid"]
        posted = await _polling("POST", self.sid, b"40/tasks,{}").get_response(timeout=10)
        assert posted["body"] == b"ok"
        answered = await _polling("GET", self.sid).get_response(timeout=10)
        path = f"/socket.io/?EIO=4&transport=websocket&sid={self.sid}"
        self.websocket = WebsocketCommunicator(WebsocketConsumer.as_asgi(server=server), path)
        assert (await self.websocket.connect())[0]
        await self.websocket.send_to("2probe")
        assert await self.websocket.receive_from() == "3probe"
        await self.websocket.send_to("5")
        return answered["body"].decode().split(p.RECORD_SEPARATOR)

    async def disconnect(self) -> None:
        assert self.websocket is not None
        await self.websocket.disconnect()
        await asyncio.sleep(0.1)  # the consumer's disconnect handling


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside one
def test_a_node_connects_in_five_statements_and_disconnects_in_six(world, monkeypatch):
    monkeypatch.setattr(server, "ensure_housekeeping", lambda: None)  # the periodic work is not looked at
    conversation = _Conversation(start_login(world.node_a, "node")[0])  # logged in on this process
    # The rule table is read once per process, by whichever caller comes first.
    principal_for_node(nodes_with_rules(Node.objects.filter(pk=world.node_a.pk)).get())
    marks: list[int] = []

    async def scenario() -> list[str]:
        await server.listening()
        conversation.count()
        marks.append(len(captured.connection.queries_log))
        answers = await conversation.connect()
        marks.append(len(captured.connection.queries_log))
        await conversation.disconnect()
        marks.append(len(captured.connection.queries_log))
        return answers

    # From synchronous code the database work runs in this thread, on the test's connection.
    with CaptureQueriesContext(connections["default"]) as captured:
        answers = in_memory(scenario)
    queries = [query["sql"] for query in captured.captured_queries]
    connect, disconnect = queries[: marks[1] - marks[0]], queries[marks[1] - marks[0] :]

    assert answers[0].startswith(f'40{TASKS_NAMESPACE},{{"sid":')
    assert answers[1] == f'42{TASKS_NAMESPACE},["sync"]'
    assert len(connect) <= 5, "\n".join(q[:150] for q in connect)
    assert len(disconnect) <= 6, disconnect
    # One binding of the process per room of the node, none per request.
    groups = sorted(f"sio.tasks.{room}" for room in _rooms(world.node_a))
    assert sorted(b[1:] for b in conversation.bindings if b[0] == "+") == groups
    assert sorted(b[1:] for b in conversation.bindings if b[0] == "-") == groups


def _rooms(node) -> list[str]:
    return [
        "all_nodes",
        f"collaboration_{node.collaboration_id}",
        f"collaboration_{node.collaboration_id}_organization_{node.organization_id}",
    ]


@pytest.mark.django_db(transaction=True)
def test_long_polling_requests_cost_no_sql_and_no_binding(world, monkeypatch):
    monkeypatch.setattr(server, "ensure_housekeeping", lambda: None)
    headers = [(b"authorization", f"Bearer {token(world.node_a)}".encode())]
    bindings: list[str] = []
    marks: list[int] = []

    async def scenario() -> list[bytes]:
        await server.listening()
        opened = await _polling("GET", headers=headers).get_response(timeout=10)
        sid = json.loads(opened["body"][1:])["sid"]
        await _polling("POST", sid, b"40/tasks,{}").get_response(timeout=10)
        await _polling("GET", sid).get_response(timeout=10)  # the connect's answers
        layer = server.layer
        layer.group_add = lambda group, _channel: bindings.append(group)  # type: ignore[method-assign]
        marks.append(len(captured.connection.queries_log))
        waiting = asyncio.create_task(_polling("GET", sid).get_response(timeout=10))
        await asyncio.sleep(0.2)  # the GET waits: nothing is queued
        posted = await _polling("POST", sid, b'42/tasks,["message","hi"]').get_response(timeout=10)
        await server.emit("hello", room="all_nodes", namespace=TASKS_NAMESPACE)
        bodies = [posted["body"], (await waiting)["body"]]
        marks.append(len(captured.connection.queries_log))
        return bodies

    with CaptureQueriesContext(connections["default"]) as captured:
        assert in_memory(scenario) == [b"ok", f'42{TASKS_NAMESPACE},["hello"]'.encode()]
    assert marks[1] == marks[0]
    assert bindings == []
