"""Resource bounds of a real ``python -m vantage6.serve`` under hostile clients: memory, file
descriptors and CPU of the live process, measured while the clients misbehave."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tasks.models import Blob
from tests.realtime.helpers import make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.rawhttp import (
    Reader,
    connect,
    cpu_seconds,
    escaped,
    log_size,
    process_sockets,
    still_serving,
    wait_until,
)

pytestmark = pytest.mark.live

MIB = 1024  # RSS is in KiB
DOCS = b"GET /api/docs HTTP/1.1\r\nHost: x\r\n\r\n"  # a few KiB of answer, quickly made


@pytest.fixture(scope="module")
def served(live_db, live_folder):
    blobs, temporary = live_folder / "bounds-blobs", live_folder / "bounds-tmp"
    blobs.mkdir(exist_ok=True)
    temporary.mkdir(exist_ok=True)
    env = live_db.process_env(V6_LOG_LEVEL="info", V6_LARGE_RESULT_STORE=str(blobs), TMPDIR=str(temporary))
    daphne = Daphne(env, live_folder)
    daphne.blobs, daphne.temporary = blobs, temporary
    yield daphne
    daphne.stop()


# The HTTP protocol's timers, short: what a slow client does shows within seconds.
HASTY = "import vantage6.http as h; h.HEAD_SECONDS = h.BODY_SECONDS = 1; import vantage6.serve as s; s.main()"


@pytest.fixture(scope="module")
def hasty(live_db, live_folder):
    daphne = Daphne(live_db.process_env(V6_LOG_LEVEL="info"), live_folder, [sys.executable, "-c", HASTY])
    yield daphne
    daphne.stop()


def _small_window(port: int) -> socket.socket:
    """A connection whose receive buffer is small: what the client does not read stays in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def _send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread (the server may stop reading it for a while)."""

    def send() -> None:
        with contextlib.suppress(OSError):  # the server may close the connection
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_pipelined_requests_of_a_client_that_reads_nothing_hold_no_memory(served):
    count = 2000  # about 9 MB of answers
    still_serving(served.port)
    before = served.rss_kib()
    sock = _small_window(served.port)
    with sock:
        sender = _send_in_background(sock, DOCS * count)
        grown = 0
        for _ in range(8):
            time.sleep(0.5)
            grown = max(grown, served.rss_kib() - before)
            still_serving(served.port)  # others are served meanwhile
        assert grown < 4 * MIB
        reader = Reader(sock)
        statuses = [reader.response()[0] for _ in range(count)]  # then every answer comes, in order
        sender.join(30)
    assert statuses == [200] * count
    assert not escaped(served.log)


def test_a_burst_of_connections_is_accepted_at_once_and_idle_ones_cost_little(served):
    count = 2000
    still_serving(served.port)
    sockets, rss = process_sockets(served.process.pid), served.rss_kib()
    idle, slowest = [], 0.0
    try:
        for _ in range(count):
            started = time.monotonic()
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
            slowest = max(slowest, time.monotonic() - started)
        # None waited for a retry of its SYN (a second): the listening backlog takes the burst.
        assert slowest < 0.5
        assert wait_until(lambda: process_sockets(served.process.pid) >= sockets + count)
        assert (served.rss_kib() - rss) / count < 10  # KiB per idle connection
        still_serving(served.port)
    finally:
        for sock in idle:
            sock.close()
    assert wait_until(lambda: process_sockets(served.process.pid) <= sockets)


def test_at_the_descriptor_limit_connections_are_refused_without_spinning_and_served_again(served):
    pid = served.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    held: list[socket.socket] = []
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, hard))
        held = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(80)]
        time.sleep(0.5)
        used = cpu_seconds(pid)
        time.sleep(1.5)
        assert cpu_seconds(pid) - used < 0.3  # no accept loop spinning on EMFILE
        with connect(served.port, timeout=5) as sock:  # refused at once: closed, not left hanging
            with contextlib.suppress(OSError):
                sock.sendall(DOCS)
            assert Reader(sock).closed()
    finally:
        for sock in held:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert wait_until(lambda: _serves(served.port))


def _serves(port: int) -> bool:
    try:
        still_serving(port)
    except OSError:
        return False
    return True


def test_half_closed_connections_are_released(served):
    since = log_size(served.log)
    still_serving(served.port)
    sockets = process_sockets(served.process.pid)
    states = [
        b"GET /api/vers",  # mid-head
        DOCS,  # a whole request
        b"POST /api/version HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",  # mid-body
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
        DOCS * 200,  # pipelined
    ]
    opened = []
    for state in states * 20:
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        sock.sendall(state)
        sock.shutdown(socket.SHUT_WR)
        opened.append(sock)
    try:
        assert wait_until(lambda: process_sockets(served.process.pid) <= sockets)
    finally:
        for sock in opened:
            sock.close()
    still_serving(served.port)
    assert not escaped(served.log, since)


def test_an_aborted_upload_leaves_no_file(served, live_world):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    head = (
        b"POST /api/blobstream HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Authorization: Bearer %s\r\n" % token(researcher).encode()
    )
    since = log_size(served.log)
    for framing, body in [
        (b"Content-Length: %d\r\n\r\n" % (8 * 2**20), b"x" * (5 * 2**20)),
        (b"Transfer-Encoding: chunked\r\n\r\n", b"100000\r\n" + b"x" * 2**20 + b"\r\n" * 5),
    ]:
        with connect(served.port) as sock:
            sock.sendall(head + framing + body)
            time.sleep(0.5)
        # The upload's bytes were on their way to the store: none stays, nor an open temporary file.
        assert wait_until(lambda: not list(served.blobs.iterdir()) and not _deleted_files(served.process.pid))
        assert not list(served.temporary.iterdir())
    assert not Blob.objects.using(LIVE).exists()
    still_serving(served.port)
    assert not escaped(served.log, since)


def _deleted_files(pid: int) -> list[str]:
    links = [str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    return [link for link in links if link.endswith(" (deleted)")]


def test_a_trickled_websocket_handshake_times_out(hasty):
    upgrade = (
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    started = time.monotonic()
    with connect(hasty.port, timeout=10) as sock:
        with contextlib.suppress(OSError):
            for byte in upgrade:
                sock.sendall(bytes((byte,)))
                time.sleep(0.02)
        reader = Reader(sock)
        assert reader.response()[0] == 408
        assert reader.closed()
    assert time.monotonic() - started < 5


def test_a_trickled_polling_body_times_out(hasty):
    opened = requests.get(f"{hasty.url}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=10)
    sid = json.loads(opened.text[1:])["sid"]
    started = time.monotonic()
    with connect(hasty.port, timeout=10) as sock:
        sock.sendall(
            b"POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n" % sid.encode()
        )
        with contextlib.suppress(OSError):  # one byte every 0.2 s: never a stall of a second
            for _ in range(30):
                sock.sendall(b"4")
                time.sleep(0.2)
        reader = Reader(sock)
        assert reader.response()[0] == 408
        assert reader.closed()
    assert time.monotonic() - started < 5


def test_a_slow_but_steady_body_is_read(hasty):
    body = json.dumps({"username": "x" * 60_000}).encode()
    with connect(hasty.port, timeout=10) as sock:
        sock.sendall(b"POST /api/version HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 8192):  # 8 KiB every 0.3 s, 2.4 s in all
            sock.sendall(body[start : start + 8192])
            time.sleep(0.3)
        assert Reader(sock).response()[0] == 405
