"""An Engine.IO session answers only the client address that opened it.

Its sid shows in every polling URL, and so in proxy and access logs: someone who learned it, from
another address, can neither poll the session's packets (the events of its rooms), nor send packets as
its client, nor take it over with a websocket upgrade, on the process that has it or through another
one. Each is answered as a sid that no process has, and the session's own client is not disturbed.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
import websocket

from tests.conftest import requires_services
from tests.realtime.helpers import LiveWorld, PollingSession, create_task, make_user, token
from tests.realtime.live import Daphne

pytestmark = pytest.mark.live

ATTACKER = "127.0.0.2"  # another loopback address: a client of its own to the server on 127.0.0.1
UNKNOWN = "no-such-sid"
# A Socket.IO event of /tasks with an acknowledgement: its ack shows whether the server took it.
PING = b'42/tasks,7["ping"]'
PING_ACK = "43/tasks,7[]"


def _polling(port: int, method: str, sid: str, source: str, forwarded: str = "", body: bytes = b"") -> tuple:
    """A long-polling request of ``sid`` from ``source`` (naming ``forwarded`` as the client, if given):
    its status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        conn.request(method, target, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _upgrade(port: int, sid: str, source: str, forwarded: str = "") -> websocket.WebSocket | int:
    """The websocket upgrade of ``sid`` from ``source``: the websocket, or the refusal's HTTP status."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    header = [f"X-Forwarded-For: {forwarded}"] if forwarded else []
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&sid={sid}"
    try:
        return websocket.create_connection(url, socket=sock, header=header, timeout=10)
    except websocket.WebSocketBadStatusException as exc:
        sock.close()
        return exc.status_code


def _events(packets: list[str]) -> list[list]:
    return [json.loads(packet[len("42/tasks,") :]) for packet in packets if packet.startswith("42/tasks,")]


def _packets(victim: PollingSession, seconds: float) -> list[str]:
    """The packets the session receives within ``seconds``; PINGs are answered."""
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        for packet in victim.poll():
            if packet == "2":
                victim.send("3")
            else:
                got.append(packet)
    return got


def _until(victim: PollingSession, event: list, seconds: float = 10) -> list[str]:
    """The packets the session receives until ``event`` is among them."""
    got, deadline = [], time.monotonic() + seconds
    while event not in _events(got):
        assert time.monotonic() < deadline, got
        got += _packets(victim, 0.5)
    return got


def _attack(
    home: Daphne, attacked: Daphne, world: LiveWorld, victim: str, source: str, attacker: str = ""
) -> None:
    """Node A's session opened on ``home`` (by a proxy naming ``victim``, if given), its sid used on
    ``attacked`` from ``source`` (a proxy naming ``attacker``, if given)."""
    headers = {"X-Forwarded-For": victim} if victim else {}
    session = PollingSession([home.url], token(world.node_a), headers=headers)
    session.send("40/tasks,{}")
    _until(session, ["sync"])
    port = attacked.port
    unknown = _polling(port, "GET", UNKNOWN, source, attacker)
    assert unknown[0] == 400

    assert _polling(port, "GET", session.sid, source, attacker) == unknown
    assert _polling(port, "POST", session.sid, source, attacker, PING) == unknown
    assert _upgrade(port, session.sid, source, attacker) == _upgrade(port, UNKNOWN, source, attacker) == 403

    # The session's client still gets the events of its rooms, and nothing the attacker sent.
    researcher = make_user(world.org_a, roles=("Researcher",))
    task_id = create_task(home.url, researcher, world.collab_ab)
    received = _until(session, ["new_task", {"id": task_id, "parent_id": None}])
    assert PING_ACK not in received
    assert _polling(port, "GET", session.sid, source, attacker) == unknown
    # Its own upgrade (taken over by ``attacked``'s process if another) is not refused, and the
    # session then stays its own there too.
    ws = _upgrade(port, session.sid, "127.0.0.1", victim)
    assert isinstance(ws, websocket.WebSocket), ws
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        assert _polling(home.port, "GET", session.sid, source, attacker) == unknown
        assert _polling(port, "GET", session.sid, source, attacker) == unknown
    finally:
        ws.close()


def test_a_session_answers_no_other_client_address(server, live_world):
    _attack(server, server, live_world, "", ATTACKER)


@pytest.fixture(scope="module")
def proxied(live_db, live_folder):
    """A live server behind a trusted proxy on 127.0.0.1."""
    daphne = Daphne(live_db.process_env(V6_TRUSTED_PROXIES="127.0.0.1"), live_folder)
    yield daphne
    daphne.stop()


def test_behind_a_trusted_proxy_a_session_answers_only_the_client_it_named(proxied, live_world):
    _attack(proxied, proxied, live_world, "10.1.1.1", "127.0.0.1", "10.2.2.2")


@requires_services("rabbitmq")
def test_another_process_refuses_another_client_address_too(instances, live_world):
    first, second = instances
    _attack(first, second, live_world, "", ATTACKER)


def test_a_forwarded_address_from_no_trusted_proxy_does_not_open_a_session(server, live_world):
    # The attacker names the victim's address in X-Forwarded-For: only a trusted proxy's word counts.
    _attack(server, server, live_world, "", ATTACKER, "127.0.0.1")


def test_behind_a_trusted_proxy_a_client_beside_it_cannot_name_the_victim(proxied, live_world):
    _attack(proxied, proxied, live_world, "10.1.1.1", ATTACKER, "10.1.1.1")
