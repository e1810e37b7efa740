"""The Engine.IO / Socket.IO wire protocol as a client sees it (raw HTTP and websocket)."""

from __future__ import annotations

import json

import pytest
import requests
import websocket

from tests.realtime.helpers import PollingSession, in_memory, token
from tests.realtime.upgrade import upgraded
from vantage6.socketio.server import Namespace, Server

pytestmark = pytest.mark.live


def handshake(url: str, **params) -> requests.Response:
    return requests.get(
        f"{url}/socket.io/", params={"EIO": "4", "transport": "polling", **params}, timeout=10
    )


@pytest.mark.django_db  # the handshake's check may use the database
def test_open_packet_has_the_vantage6_defaults():
    server = Server(namespaces={"/tasks": Namespace()})

    session, packet = in_memory(
        lambda: server.open_session("polling", {"authorization": "Bearer x", "cookie": "c"})
    )

    assert packet[0] == "0"
    assert json.loads(packet[1:]) == {
        "sid": session.sid,
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 60000,
        "maxPayload": 1000000,
    }


def test_handshake_over_polling_at_the_root(server):
    for path in ("/socket.io/", "/socket.io"):
        response = requests.get(f"{server.url}{path}?EIO=4&transport=polling&t=1", timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        opened = json.loads(response.text[1:])
        assert response.text[0] == "0"
        assert opened["upgrades"] == ["websocket"]
        assert opened["pingInterval"] == 2000  # V6_SOCKET_PING_INTERVAL of the test server
        assert len(opened["sid"]) >= 20


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"EIO": "3"}, 400, 5),
        ({"transport": "carrier-pigeon"}, 400, 0),
        ({"sid": "no-such-session"}, 400, 1),
        ({"sid": "forged.signature"}, 400, 1),
    ],
)
def test_bad_requests_are_refused(server, params, status, code):
    response = handshake(server.url, **params)

    assert response.status_code == status
    assert response.json()["code"] == code


def test_unknown_namespace_gets_connect_error(server, live_world):
    session = PollingSession([server.url], token(live_world.node_a))

    session.send("40/nope,{}")

    assert session.poll() == ['44/nope,{"message":"Invalid namespace"}']


def test_polling_connect_sync_and_ping(server, live_world):
    session = PollingSession([server.url], token(live_world.node_a))

    session.send("40/tasks,{}")
    first = session.poll()

    assert first[0].startswith('40/tasks,{"sid":')
    assert '42/tasks,["sync"]' in first + session.poll()
    # A waiting GET returns a PING after pingInterval.
    while (packets := session.poll()) != ["2"]:
        assert all(packet.startswith("42/tasks,") for packet in packets)


def test_upgrade_answers_the_waiting_get_with_noop(server, live_world):
    polling = PollingSession([server.url], token(live_world.node_a))
    with upgraded(polling, server.port) as ws:
        assert ws.recv() == '42/tasks,["sync"]'


def test_websocket_without_sid_gets_its_own_session(server, live_world):
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket",
        header=[f"Authorization: Bearer {token(live_world.node_a)}"],
        timeout=10,
    )
    try:
        opened = ws.recv()
        assert opened[0] == "0" and json.loads(opened[1:])["upgrades"] == []
        ws.send("40/tasks,{}")
        assert ws.recv().startswith('40/tasks,{"sid":')
        assert ws.recv() == '42/tasks,["sync"]'
        ws.send_binary(b"\x00\x01")  # binary frames are ignored
        ws.send('42/tasks,7["ping"]')
        while (packet := ws.recv()) != "43/tasks,7[]":
            assert packet.startswith(("42/tasks,", "2"))
    finally:
        ws.close()


DEEP = 200_000  # beyond the recursion limit of the JSON decoder, within the payload limit


def _deep_event(depth: int) -> str:
    return '42/tasks,["node_info_update",' + "[" * depth + "]" * depth + "]"


def test_a_deeply_nested_packet_over_websocket_is_ignored(server):
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
    try:
        assert ws.recv().startswith("0{")
        ws.send("40/tasks,{}")
        assert ws.recv().startswith('40/tasks,{"sid":')

        ws.send(_deep_event(DEEP))
        ws.send('42/tasks,7["ping"]')

        while (packet := ws.recv()) == "2":
            ws.send("3")
        assert packet == "43/tasks,7[]"  # the connection lives on, the bad packet had no answer
    finally:
        ws.close()
    assert "Traceback" not in server.log.read_text()


def test_a_deeply_nested_packet_over_polling_is_ignored(server, live_world):
    session = PollingSession([server.url], token(live_world.node_a))
    session.send("40/tasks,{}")

    session.send(_deep_event(DEEP), '42/tasks,7["ping"]')

    acked = []
    while "43/tasks,7[]" not in acked:
        acked += session.poll()
    assert "Traceback" not in server.log.read_text()
