"""A room's event reaches the sockets of the process that emits it directly, and goes through the
channel layer only to other processes bound to the room: once each, the emitting process included."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.db import connections

from nodes.consumers import TasksNamespace, handshake_auth
from nodes.events import TASKS_NAMESPACE
from tasks import services as task_services
from tests.factories import make_task
from tests.realtime.helpers import Sink, in_memory, recorded, token
from vantage6.socketio.database import events
from vantage6.socketio.server import Namespace, Server

ROOM, NAMESPACE = "collaboration_1", "/tasks"


def _server() -> Server:
    return Server(
        namespaces={NAMESPACE: Namespace()}, authenticate=lambda _headers: ({}, True), secret=b"secret"
    )


async def _member(server: Server, room: str = ROOM) -> Sink:
    sink = Sink()
    session, _ = await server.open_session("websocket", {}, sink)
    await server.join(session, NAMESPACE, room)
    return sink


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_an_event_of_a_lone_process_is_delivered_without_the_channel_layer():
    server = _server()

    async def scenario() -> tuple[list[Sink], Sink, list[tuple]]:
        members = [await _member(server), await _member(server)]
        elsewhere = await _member(server, "collaboration_2")
        publishes = recorded(server.layer, "group_send")
        await server.emit("algorithm_status_change", {"run_id": 1}, room=ROOM, namespace=NAMESPACE)
        await asyncio.sleep(0.1)
        return members, elsewhere, publishes

    members, elsewhere, publishes = in_memory(scenario)

    expected = ['42/tasks,["algorithm_status_change",{"run_id":1}]']
    assert [sink.packets for sink in members] == [expected, expected]
    assert elsewhere.packets == []
    assert publishes == []


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_an_event_reaches_the_other_process_once_and_its_own_sockets_once():
    emitting, other = _server(), _server()

    async def scenario() -> tuple[Sink, Sink, list[tuple]]:
        here, there = await _member(emitting), await _member(other)
        publishes = recorded(emitting.layer, "group_send")
        await emitting.emit("algorithm_status_change", {"run_id": 1}, room=ROOM, namespace=NAMESPACE)
        await asyncio.sleep(0.1)
        return here, there, publishes

    here, there, publishes = in_memory(scenario)

    expected = ['42/tasks,["algorithm_status_change",{"run_id":1}]']
    assert here.packets == expected and there.packets == expected
    assert [group for group, _message in publishes] == ["sio.tasks.collaboration_1"]


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_an_event_published_outside_the_loop_of_the_sessions_still_reaches_them():
    """Synchronous code (a REST request) publishes through the layer; the process delivers it once."""
    server = _server()

    async def scenario() -> Sink:
        sink = await _member(server)
        message = {"type": "eio.packets", "group": "sio.tasks.collaboration_1", "packets": ['42/tasks,["x"]']}
        await server.layer.group_send("sio.tasks.collaboration_1", message)
        await asyncio.sleep(0.1)
        return sink

    assert in_memory(scenario).packets == ['42/tasks,["x"]']


def _worker_queries(record: bool) -> list[str]:
    """The SQL of the events' database thread since the last call (``record`` starts recording)."""
    connection = connections["default"]
    connection.force_debug_cursor = record
    queries = [query["sql"] for query in connection.queries_log]
    connection.queries_log.clear()
    return queries


@pytest.mark.django_db(transaction=True)  # the events' database thread has a connection of its own
def test_a_node_status_report_costs_one_statement_and_no_publish_in_one_process(world, monkeypatch):
    # The process's first report: its run is read on the database thread, which compiles the query that
    # later reports read on the event loop (tests/realtime/test_status_reads.py).
    monkeypatch.setattr(task_services._run_of_reporter, "_plans", {})
    server = Server(namespaces={TASKS_NAMESPACE: TasksNamespace()}, authenticate=handshake_auth, secret=b"s")
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    run = task.runs.get()
    report = {"run_id": run.pk, "status": "active"}
    tokens = [token(node) for node in (world.node_a, world.node_b)]

    async def scenario() -> tuple[Sink, Sink, list[tuple], list[str]]:
        sinks = []
        for access in tokens:
            sink = Sink()
            session, _ = await server.open_session("websocket", {"authorization": f"Bearer {access}"}, sink)
            await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
            sinks.append((session, sink))
        (sender, heard_by_sender), (_, heard) = sinks
        heard.packets.clear()
        publishes = recorded(server.layer, "group_send")
        await events.run(_worker_queries, True)
        await server.receive(sender, f"2{TASKS_NAMESPACE},{json.dumps(['algorithm_status_change', report])}")
        await asyncio.sleep(0.1)
        return heard_by_sender, heard, publishes, await events.run(_worker_queries, False)

    heard_by_sender, heard, publishes, queries = in_memory(scenario)

    relayed = [packet for packet in heard.packets if "algorithm_status_change" in packet]
    assert len(relayed) == 1 and json.loads(relayed[0].split(",", 1)[1])[1]["job_id"] == task.job_id
    assert sum("algorithm_status_change" in packet for packet in heard_by_sender.packets) == 1
    assert publishes == []
    assert len(queries) == 1, queries  # the run, its task and job, checked against the node
