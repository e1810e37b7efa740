"""Resource bounds of a real ``python -m vantage6.serve`` under hostile clients: memory, file
descriptors and CPU of the live process, measured while the clients misbehave."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time

import pytest
import requests

from tasks.models import Blob
from tests.realtime.helpers import make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.rawhttp import (
    MIB,
    Reader,
    connect,
    cpu_seconds,
    escaped,
    log_size,
    open_files,
    send_in_background,
    served_sockets,
    small_window,
    still_serving,
    unconnected,
    wait_until,
)
from tests.realtime.test_websocket_conformance import SmallWindow
from tests.realtime.test_websocket_frames import PING, encode

pytestmark = pytest.mark.live

DOCS = b"GET /api/docs HTTP/1.1\r\nHost: x\r\n\r\n"  # a few KiB of answer, quickly made


@pytest.fixture(scope="module")
def served(live_db, live_folder):
    blobs, temporary = live_folder / "bounds-blobs", live_folder / "bounds-tmp"
    blobs.mkdir(exist_ok=True)
    temporary.mkdir(exist_ok=True)
    env = live_db.process_env(
        V6_LOG_LEVEL="info",
        V6_LARGE_RESULT_STORE=str(blobs),
        TMPDIR=str(temporary),
        V6_MAX_CONNECTIONS_PER_CLIENT="2000",  # the bursts below come from one address
    )
    daphne = Daphne(env, live_folder)
    daphne.blobs, daphne.temporary = blobs, temporary
    yield daphne
    daphne.stop()


def test_pipelined_requests_of_a_client_that_reads_nothing_hold_no_memory(served):
    count = 1500  # about 7 MB of answers
    still_serving(served.port)
    before = served.rss_kib()
    sock = small_window(served.port)
    with sock:
        sender = send_in_background(sock, DOCS * count)
        grown = 0
        for _ in range(6):
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
    count = 1000  # within the listening backlog, however late the server accepts them
    still_serving(served.port)
    assert wait_until(lambda: unconnected(served)), served_sockets(served)
    rss = served.rss_kib()
    idle, slowest = [], 0.0
    try:
        for _ in range(count):
            started = time.monotonic()
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
            slowest = max(slowest, time.monotonic() - started)
        # None waited for a retry of its SYN (a second): the listening backlog takes the burst.
        assert slowest < 0.9
        # Ours and the listening one.
        assert wait_until(lambda: served_sockets(served) >= count + 1), served_sockets(served)
        assert (grown := (served.rss_kib() - rss) / count) < 10, grown  # KiB per idle connection
        still_serving(served.port)
    finally:
        for sock in idle:
            sock.close()
    assert wait_until(lambda: unconnected(served)), served_sockets(served)


def test_at_the_descriptor_limit_connections_are_refused_without_spinning_and_served_again(served):
    # Warm (a first request may import what start-up left): run first, the server served nothing yet.
    still_serving(served.port)
    # A connection closing after the limit is set (the start's probe, an earlier test's) frees a
    # descriptor under it, which the connection below would be served on.
    assert wait_until(lambda: unconnected(served))
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
    assert wait_until(lambda: unconnected(served))
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
        assert wait_until(lambda: unconnected(served))
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
    since, blobs = log_size(served.log), set(Blob.objects.using(LIVE).values_list("name", flat=True))
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
    assert set(Blob.objects.using(LIVE).values_list("name", flat=True)) == blobs  # no record of them either
    still_serving(served.port)
    assert not escaped(served.log, since)


def _deleted_files(pid: int) -> list[str]:
    return [link for link in open_files(pid) if link.endswith(" (deleted)")]


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


@pytest.mark.parametrize(
    "last",
    [DOCS, DOCS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")],
    ids=["kept alive", "closing after the last answer"],
)
def test_a_client_that_never_reads_its_answers_is_dropped(hasty, last):
    still_serving(hasty.port)
    assert wait_until(lambda: unconnected(hasty))
    since = log_size(hasty.log)
    with small_window(hasty.port) as sock:
        # 7 MB of answers: more than the kernel's buffers take, the rest waits in the server.
        send_in_background(sock, DOCS * 1500 + last)
        # The answers stay unread: the server drops the connection rather than hold them for ever.
        assert wait_until(lambda: "dropped" in _log_since(hasty, since), timeout=8)
        assert wait_until(lambda: unconnected(hasty))


def _log_since(daphne: Daphne, since: int) -> str:
    with daphne.log.open("rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace")


def test_a_websocket_that_never_reads_is_dropped_once_closed(hasty):
    still_serving(hasty.port)
    assert wait_until(lambda: unconnected(hasty))
    client = SmallWindow(hasty.port)
    try:
        client.open()
        # Pongs the client leaves unread; it answers no Engine.IO ping either: the server closes the
        # connection after pingInterval + pingTimeout (4 s here), and drops it as the close stays unread.
        send_in_background(client.sock, encode(PING, b"p" * 125) * 50_000)  # 6 MB of pongs
        assert wait_until(lambda: unconnected(hasty), timeout=8)
    finally:
        client.close()
