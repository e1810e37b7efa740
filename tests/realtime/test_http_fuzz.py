"""A seeded mutation fuzzer over valid HTTP/1.1 requests, against a real ``python -m vantage6.serve``.

For a bounded time, batches of mutated requests (request line, headers, chunked framing, pipelining,
100-continue, upgrades) go out on connections of their own, each followed by a request that closes
the connection. Whatever the bytes, every answer must be well-formed HTTP and no 500, no exception may
reach the server's log, and the server keeps serving others, within bounded memory and descriptors.
The seed makes a failure repeatable: the failing case is in the assertion message.
"""

from __future__ import annotations

import contextlib
import random
import re
import selectors
import socket
import time

import pytest

from tests.realtime.rawhttp import Reader, escaped, log_size, served_sockets, still_serving, wait_until

pytestmark = pytest.mark.live

SEED = 9112
SECONDS = 8
BATCH = 24
WAIT = 0.5  # for the answers of a batch: a request the mutation left incomplete gets none
AFTER = b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
MIB = 1024

UPGRADE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SEEDS = [
    b"GET /api/version HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/version HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
    b'{"a":1}',
    b"POST /api/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'3;ext=1\r\n{"a\r\n4\r\n":1}\r\n0\r\nX-Trailer: 1\r\n\r\n',
    b"POST /api/version HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\nGET /api/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/version?a=%00&b=%ff HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n",
    UPGRADE + b"\x81\x82\x00\x00\x00\x0040",
]
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"0",
    b"f",
    b"\xff",
    b"\x7f",
    b"\r\n\r\n",
    b"%00",
    b"%",
    b"/",
    b"?",
    b"#",
    b"\r\n ",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Upgrade: websocket\r\n",
    b"Host: y\r\n",
    b"Content-Length: 0\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"GET / HTTP/1.1\r\n",
]
NUMBERS = [b"0", b"-1", b"+1", b"0x10", b"1 1", b"", b"18446744073709551617", b"999999999999999999", b"00007"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one to four random edits."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(8)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:
            out[at:at] = rng.choice(TOKENS)
        elif kind == 2:
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            out[at:at] = out[at : at + rng.randint(1, 40)] * rng.randint(1, 3)
        elif kind == 4 and (numbers := list(re.finditer(rb"\d+", out))):
            number = rng.choice(numbers)
            out[number.start() : number.end()] = rng.choice(NUMBERS)
        elif kind == 5 and (ends := [m.start() for m in re.finditer(rb"\r\n", out)]):
            end = rng.choice(ends)
            out[end : end + 2] = rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"])
        elif kind == 6:
            lines = bytes(out).split(b"\r\n")
            middle = lines[1:-2]
            rng.shuffle(middle)
            out = bytearray(b"\r\n".join([*lines[:1], *middle, *lines[-2:]]))
        else:
            del out[at:]
    return bytes(out)


class _Received:
    """What a connection received, read back by the test's response reader."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, _size: int) -> bytes:
        data, self.data = self.data, b""
        return data


def statuses(data: bytes) -> list[int]:
    """The statuses of the well-formed answers in ``data`` (up to a 101: websocket frames follow);
    AssertionError if any is malformed."""
    reader = Reader(_Received(data))  # type: ignore[arg-type]
    found: list[int] = []
    while reader.data or reader._more():
        try:
            found.append(reader.response()[0])
        except EOFError:
            break  # cut short: the connection was closed or given up mid-answer
        if found[-1] == 101:
            break
    return found


def run_batch(port: int, cases: list[bytes]) -> list[bytes]:
    """Send each case on a connection of its own; what each received within ``WAIT`` (or until the
    server closed it)."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytearray] = {}
    for case in cases:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        with contextlib.suppress(OSError):  # refused before all of it was read
            sock.sendall(case + AFTER)
        sock.setblocking(False)
        received[sock] = bytearray()
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + WAIT
    open_ = len(received)
    while open_ and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if chunk:
                received[sock] += chunk
            else:
                selector.unregister(sock)
                open_ -= 1
    selector.close()
    for sock in received:
        sock.close()
    return [bytes(data) for data in received.values()]


def test_mutated_requests_get_well_formed_answers_and_no_errors(server):
    rng = random.Random(SEED)
    still_serving(server.port)
    since, rss, sockets = log_size(server.log), server.rss_kib(), served_sockets(server)
    deadline, tried = time.monotonic() + SECONDS, 0
    while time.monotonic() < deadline:
        cases = [mutate(rng.choice(SEEDS), rng) for _ in range(BATCH)]
        for case, data in zip(cases, run_batch(server.port, cases), strict=True):
            try:
                answered = statuses(data)
            except (ValueError, IndexError, UnicodeDecodeError) as exc:
                raise AssertionError(f"malformed answer {data[:300]!r} to {case!r}") from exc
            assert 500 not in answered, f"{case!r} answered {data[:500]!r}"
        tried += len(cases)
        still_serving(server.port)
        assert not escaped(server.log, since), "\n".join(escaped(server.log, since))
    assert tried > 500
    assert wait_until(lambda: served_sockets(server) <= sockets)  # no connection left behind
    assert server.rss_kib() - rss < 40 * MIB
