"""Resource bounds of a real ``python -m vantage6.serve`` under hostile clients: memory, file
descriptors and CPU of the live process, measured while the clients misbehave."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.realtime.live import Daphne
from tests.realtime.rawhttp import Reader, escaped, still_serving

pytestmark = pytest.mark.live

MIB = 1024  # RSS is in KiB
DOCS = b"GET /api/docs HTTP/1.1\r\nHost: x\r\n\r\n"  # a few KiB of answer, quickly made


@pytest.fixture(scope="module")
def served(live_db, live_folder):
    daphne = Daphne(live_db.process_env(V6_LOG_LEVEL="info"), live_folder)
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
