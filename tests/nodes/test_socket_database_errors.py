"""A database error of a socket's handshake, connect or event is classified as REST classifies it: only
an error that says the database cannot serve is an outage (whose end tells every node of the process
``sync``); any other (a conflict, a bug) is logged as the error it is, and the client refused for it is
not told that the database is unavailable."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import IntegrityError

from nodes import consumers
from nodes.events import TASKS_NAMESPACE
from tests.realtime.helpers import Sink, in_memory, token
from vantage6 import database_outage
from vantage6.socketio.server import Server

pytestmark = pytest.mark.django_db(transaction=True)  # the sockets' database work runs on a thread of its own


def _conflict(*_args: object) -> None:
    raise IntegrityError("duplicate key value violates unique constraint")


def _server() -> Server:
    return Server(
        namespaces={TASKS_NAMESPACE: consumers.TasksNamespace()},
        authenticate=consumers.handshake_auth,
        secret=b"s",
    )


def test_a_conflict_in_a_node_event_is_no_outage(world, monkeypatch, caplog):
    database_outage.reached()  # the end of an outage an earlier test may have left
    monkeypatch.setattr(consumers, "heartbeat", _conflict)
    server = _server()
    headers = {"authorization": f"Bearer {token(world.node_a)}"}

    async def scenario() -> None:
        session, _ = await server.open_session("websocket", headers, Sink())
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
        await server.receive(session, f'2{TASKS_NAMESPACE},["ping"]')

    with caplog.at_level(logging.WARNING, logger="vantage6.socketio.server"):
        in_memory(scenario)

    assert not database_outage._down
    (record,) = [r for r in caplog.records if "ping" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "unexpected database error: IntegrityError" in record.getMessage()


def test_a_connect_refused_for_a_conflict_is_told_of_an_unexpected_error(world, monkeypatch):
    database_outage.reached()
    monkeypatch.setattr(consumers, "identify", _conflict)
    server = _server()
    headers = {"authorization": f"Bearer {token(world.node_a)}"}

    async def scenario() -> Sink:
        sink = Sink()
        session, _ = await server.open_session("websocket", headers, sink)
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
        return sink

    sink = in_memory(scenario)

    refusal = f"44{TASKS_NAMESPACE},"
    assert [json.loads(packet[len(refusal) :]) for packet in sink.packets if packet.startswith(refusal)] == [
        {"message": "An unexpected error occurred on the server!"}
    ]
    assert not database_outage._down
