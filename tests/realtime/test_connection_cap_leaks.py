"""The count of a client address's open connections (``V6_MAX_CONNECTIONS_PER_CLIENT``) against a real
``python -m vantage6.serve``: connections that end by every error path (a malformed or oversized head, a
refused or broken websocket handshake, a connection reset under a request or a websocket) give their
place back: many times the cap of them, one after the other, leave the address its whole cap."""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest

from tests.realtime.live import Daphne
from tests.realtime.rawhttp import Reader, escaped, log_size, wait_until

pytestmark = pytest.mark.live

PER_CLIENT = 2
CLIENT = "127.0.0.4"
UPGRADE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture(scope="module")
def capped(live_db, live_folder):
    daphne = Daphne(live_db.process_env(V6_MAX_CONNECTIONS_PER_CLIENT=str(PER_CLIENT)), live_folder)
    yield daphne
    daphne.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT, 0))


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client that crashed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _answered_and_closed(sock: socket.socket, data: bytes) -> int | None:
    with contextlib.suppress(OSError, EOFError), sock:
        sock.sendall(data)
        reader = Reader(sock)
        status = reader.response()[0]
        assert reader.closed()
        return status
    return None


def _whole_cap(port: int) -> bool:
    """Whether the address can hold ``PER_CLIENT`` connections at once, each answered."""
    held: list[socket.socket] = []
    try:
        for _ in range(PER_CLIENT):
            held.append(_connect(port))
            held[-1].sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
            if Reader(held[-1]).response()[0] != 200:
                return False
        return True
    except (OSError, EOFError):
        return False
    finally:
        for sock in held:
            sock.close()


ENDINGS = {
    "malformed head": lambda port: _answered_and_closed(_connect(port), b"NOT HTTP\r\n\r\n"),
    "oversized head": lambda port: _answered_and_closed(
        _connect(port), b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"
    ),
    "refused handshake": lambda port: _answered_and_closed(
        _connect(port), UPGRADE.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 99")
    ),
    "reset under a body": lambda port: _reset_after(
        port,
        b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{",
    ),
    "reset websocket": lambda port: _reset_after(port, UPGRADE, expect=b"101"),
    "reset in the handshake": lambda port: _reset_after(port, UPGRADE[:40]),
}


def _reset_after(port: int, data: bytes, expect: bytes | None = None) -> None:
    sock = _connect(port)
    sock.sendall(data)
    if expect is not None:
        assert expect in sock.recv(4096)
    _reset(sock)


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_connections_ended_by_an_error_give_their_place_back(capped, ending):
    since = log_size(capped.log)
    for _ in range(3 * PER_CLIENT):
        ENDINGS[ending](capped.port)

    assert wait_until(lambda: _whole_cap(capped.port)), "the address may open its whole cap again"
    assert not escaped(capped.log, since)
