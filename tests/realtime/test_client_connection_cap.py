"""One client address opening every connection a server process may hold (``V6_MAX_CONNECTIONS``), to
lock every node and user out, against a real ``python -m vantage6.serve``: idle kept-alive connections and
websockets, directly and through a trusted proxy (``X-Forwarded-For``)."""

from __future__ import annotations

import contextlib
import re
import socket

import pytest

from tests.realtime.live import Daphne
from tests.realtime.rawhttp import Reader, escaped, log_size, wait_until

pytestmark = pytest.mark.live

PER_CLIENT = 3
ATTACKER = "127.0.0.1"
OTHER = "127.0.0.2"
PROXY = "127.0.0.3"  # trusted: its X-Forwarded-For names the client
UPGRADE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@pytest.fixture(scope="module")
def capped(live_db, live_folder):
    env = live_db.process_env(
        V6_MAX_CONNECTIONS_PER_CLIENT=str(PER_CLIENT), V6_TRUSTED_PROXIES=PROXY, V6_METRICS="1"
    )
    daphne = Daphne(env, live_folder)
    yield daphne
    daphne.stop()


def _connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _request(path: str = "/api/version", forwarded: str | None = None, *, close: bool = False) -> bytes:
    fields = b"Host: x\r\n"
    if forwarded is not None:
        fields += b"X-Forwarded-For: %s\r\n" % forwarded.encode()
    if close:
        fields += b"Connection: close\r\n"
    return b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), fields)


def _kept_alive(port: int, source: str, forwarded: str | None = None) -> socket.socket:
    """A connection left open after one answered request, as an attacker leaves it."""
    sock = _connect(port, source)
    sock.sendall(_request(forwarded=forwarded))
    assert Reader(sock).response()[0] == 200
    return sock


def _websocket(port: int, source: str, forwarded: str | None = None) -> socket.socket:
    """An open, unauthenticated websocket."""
    sock = _connect(port, source)
    extra = b"" if forwarded is None else b"X-Forwarded-For: %s\r\n" % forwarded.encode()
    sock.sendall(UPGRADE + extra + b"\r\n")
    assert Reader(sock).response()[0] == 101
    return sock


def _answer(port: int, source: str, forwarded: str | None = None, path: str = "/api/version") -> int | None:
    """The status of a request on a new connection; None if the connection was closed without one."""
    with contextlib.suppress(OSError, EOFError), _connect(port, source) as sock:
        sock.sendall(_request(path, forwarded, close=True))
        reader = Reader(sock)
        status = reader.response()[0]
        # Until the server closed its end: then the connection no longer counts for the client.
        assert reader.closed()
        return status
    return None


def _refused_per_client(port: int) -> int:
    with _connect(port, OTHER) as sock:
        sock.sendall(_request("/api/metrics", close=True))
        status, _, body = Reader(sock).response()
    assert status == 200
    found = re.search(r"^vantage6_connections_refused_per_client_total (\d+)$", body.decode(), re.M)
    return int(found[1]) if found else 0


def test_one_address_is_refused_at_its_cap_while_others_are_served(capped):
    since = log_size(capped.log)
    refused_before = _refused_per_client(capped.port)
    held = [_websocket(capped.port, ATTACKER)]
    try:
        # What the attacker says of itself changes nothing: it is not a trusted proxy.
        held += [_kept_alive(capped.port, ATTACKER, forwarded=f"10.0.0.{n}") for n in range(PER_CLIENT - 1)]

        assert [_answer(capped.port, ATTACKER, f"10.1.0.{n}") for n in range(3)] == [None] * 3
        assert _answer(capped.port, OTHER) == 200  # another address is served meanwhile
        assert _websocket(capped.port, OTHER).close() is None
        assert _refused_per_client(capped.port) - refused_before >= 3

        held.pop(0).close()  # the websocket ends: its place is free again
        assert wait_until(lambda: _answer(capped.port, ATTACKER) == 200)
        held.append(_kept_alive(capped.port, ATTACKER))
        assert wait_until(lambda: _answer(capped.port, ATTACKER) is None)  # the cap holds again
    finally:
        for sock in held:
            sock.close()
    assert capped.log.read_text()[since:].count("V6_MAX_CONNECTIONS_PER_CLIENT") == 1  # once a minute
    assert not escaped(capped.log, since)


def test_behind_a_trusted_proxy_the_cap_is_per_forwarded_client(capped):
    since = log_size(capped.log)
    attacker, other = "203.0.113.7", "203.0.113.8"
    held = [_websocket(capped.port, PROXY, attacker)]
    try:
        held += [_kept_alive(capped.port, PROXY, attacker) for _ in range(PER_CLIENT - 1)]

        # The proxy's next connection for the attacker is answered 429 and closed.
        with _connect(capped.port, PROXY) as sock:
            sock.sendall(_request(forwarded=attacker))
            reader = Reader(sock)
            assert reader.response()[0] == 429
            assert reader.closed()
        # The proxy itself, for another client, is served: it holds more than the cap in all now.
        held += [_kept_alive(capped.port, PROXY, other) for _ in range(PER_CLIENT)]
        assert _answer(capped.port, PROXY, other) == 429  # ... which has its own cap

        # A kept-alive proxy connection counts for the client of its latest request.
        reused = held.pop()
        reused.sendall(_request(forwarded="203.0.113.9"))
        assert Reader(reused).response()[0] == 200
        held.append(reused)
        assert _answer(capped.port, PROXY, other) == 200
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: _answer(capped.port, PROXY, attacker) == 200)
    assert not escaped(capped.log, since)
