"""Connections an anonymous client opens to exhaust a server process, and requests without a Host,
against a real ``python -m vantage6.serve``."""

from __future__ import annotations

import contextlib
import json
import re
import socket

import pytest
import websocket

from tests.realtime.live import Daphne
from tests.realtime.rawhttp import Reader, connect, escaped, log_size, wait_until

pytestmark = pytest.mark.live

CAP = 4
KEPT_ALIVE = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
CLOSE = b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
METRICS = b"GET /api/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def capped(live_db, live_folder):
    daphne = Daphne(live_db.process_env(V6_MAX_CONNECTIONS=str(CAP), V6_METRICS="1"), live_folder)
    yield daphne
    daphne.stop()


def _refused(port: int) -> bool:
    """Whether a new connection is closed without an answer."""
    with contextlib.suppress(OSError), connect(port, timeout=5) as sock:
        sock.sendall(KEPT_ALIVE)
        return Reader(sock).closed()
    return True  # reset before the request went out


def _answer(port: int, request: bytes) -> tuple[int, bytes] | None:
    """The status and body of a request on a new connection, once the server closed it; None if the
    connection was refused."""
    with connect(port, timeout=10) as sock:
        sock.sendall(request)
        reader = Reader(sock)
        try:
            status, _, body = reader.response()
        except (EOFError, ConnectionResetError):
            return None
        assert reader.closed()
    return status, body


def test_connections_over_the_cap_are_closed_at_once_until_one_is_freed(capped):
    since = log_size(capped.log)
    held: list[socket.socket] = []
    ws = websocket.create_connection(f"ws://127.0.0.1:{capped.port}/socket.io/?EIO=4&transport=websocket")
    try:
        for _ in range(CAP - 1):  # idle kept-alive connections, as an attacker leaves them
            held.append(connect(capped.port, timeout=10))
            held[-1].sendall(KEPT_ALIVE)
            assert Reader(held[-1]).response()[0] == 200

        assert [_refused(capped.port) for _ in range(3)] == [True] * 3

        held.pop().close()  # one slot free: health answers
        assert wait_until(lambda: (_answer(capped.port, HEALTH) or (0,))[0] == 200)
        answer = _answer(capped.port, METRICS)
        assert answer is not None and answer[0] == 200
        refused = re.search(r"^vantage6_connections_refused_total (\d+)$", answer[1].decode(), re.M)
        assert refused and int(refused[1]) >= 3  # and those while the freed slot was being closed
        held.append(connect(capped.port, timeout=10))  # the last slot taken: the cap holds again
        held[-1].sendall(KEPT_ALIVE)
        assert Reader(held[-1]).response()[0] == 200
        assert wait_until(lambda: _refused(capped.port))
    finally:
        ws.close()
        for sock in held:
            sock.close()
    assert capped.log.read_text()[since:].count("V6_MAX_CONNECTIONS") == 1  # at most once a minute
    assert not escaped(capped.log, since)


HOSTLESS = {
    "HTTP/1.1 without Host": (b"GET /api/version HTTP/1.1\r\n\r\n", [400]),
    "a websocket upgrade without Host": (
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        [400],
    ),
    "HTTP/1.1 with an empty Host": (b"GET /api/version HTTP/1.1\r\nHost:\r\n\r\n" + CLOSE, [400, 200]),
    "HTTP/1.0 without Host": (b"GET /api/version HTTP/1.0\r\n\r\n", [200]),
}


@pytest.mark.parametrize(("request_bytes", "statuses"), HOSTLESS.values(), ids=HOSTLESS.keys())
def test_an_http_1_1_request_needs_a_host(server, request_bytes, statuses):
    since = log_size(server.log)
    answers = []
    with connect(server.port, timeout=5) as sock:
        sock.sendall(request_bytes)
        reader = Reader(sock)
        with contextlib.suppress(EOFError, ConnectionResetError):
            while True:  # until the server closes the connection
                answers.append(reader.response())
    assert [status for status, _, _ in answers] == statuses
    if statuses == [400]:
        assert json.loads(answers[0][2]) == {"msg": "Missing Host header"}
    assert not escaped(server.log, since)
