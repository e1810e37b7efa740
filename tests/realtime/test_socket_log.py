"""What clients send over the socket reaches the log only from identified clients, bounded and on
one line: nobody can flood the log or forge lines in it."""

from __future__ import annotations

import json
import logging

import pytest
from channels.testing import WebsocketCommunicator

from nodes.consumers import server
from nodes.events import TASKS_NAMESPACE
from tests.realtime.helpers import in_memory, token
from vantage6.logging import CLIENT_TEXT_LIMIT
from vantage6.socketio.consumers import WebsocketConsumer

FORGED = "done\n2026-12-05 08:00:00 WARNING accounts: root logged in from 203.0.113.9\x1b[2K"


def _event(name: str, data: object) -> str:
    return f"42{TASKS_NAMESPACE}," + json.dumps([name, data])


def _send_over_websocket(headers: list[tuple[bytes, bytes]], packets: list[str]) -> None:
    async def scenario() -> None:
        path = "/socket.io/?EIO=4&transport=websocket"
        socket = WebsocketCommunicator(WebsocketConsumer.as_asgi(server=server), path, headers=headers)
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_from()).startswith("0")  # Engine.IO open
        await socket.send_to(f"40{TASKS_NAMESPACE},{{}}")
        assert (await socket.receive_from()).startswith(f"40{TASKS_NAMESPACE},")
        for packet in packets:
            await socket.send_to(packet)
        while not await socket.receive_nothing(timeout=0.5):
            await socket.receive_from()
        await socket.disconnect(timeout=10)

    in_memory(scenario)


def _lines(caplog) -> list[str]:
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "nodes.consumers" and r.levelno >= logging.INFO]


@pytest.fixture(autouse=True)
def _no_housekeeping(monkeypatch):
    monkeypatch.setattr(server, "ensure_housekeeping", lambda: None)  # not what is looked at here


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside one
@pytest.mark.parametrize("headers", [[], [(b"authorization", b"Bearer not-a-token")]], ids=["none", "bad"])
def test_unidentified_clients_messages_and_errors_are_not_logged(world, caplog, headers):  # noqa: ARG001
    packets = [_event(name, FORGED) for name in ("message", "error", "unknown\nevent")] * 20

    with caplog.at_level(logging.INFO, logger="nodes.consumers"):
        _send_over_websocket(headers, packets)

    assert not [line for line in _lines(caplog) if "sent" in line]


@pytest.mark.django_db(transaction=True)
def test_an_identified_clients_message_is_logged_on_one_line_and_bounded(world, caplog):
    headers = [(b"authorization", f"Bearer {token(world.node_a)}".encode())]
    long = "x" * 100_000
    packets = [_event("message", FORGED), _event("error", {"text": long}), _event("bad\r\nname", FORGED)]

    with caplog.at_level(logging.INFO, logger="nodes.consumers"):
        _send_over_websocket(headers, packets)

    sent = [line for line in _lines(caplog) if " sent " in line]
    assert len(sent) == 3
    assert all(line.isprintable() for line in sent)
    assert "done\\n2026-12-05 08:00:00 WARNING" in sent[0] and "\\x1b[2K" in sent[0]
    assert len(sent[1]) < CLIENT_TEXT_LIMIT + 100
    assert "bad\\r\\nname" in sent[2]
