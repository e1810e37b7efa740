"""Clients that start downloading a large result and then read nothing, more of them than a process has
request threads: a streamed answer holds a thread only while it reads its next piece, so the other
clients are answered meanwhile."""

from __future__ import annotations

import time

import pytest
import requests

from tasks.models import Run
from tests.realtime.helpers import make_run, make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.rawhttp import small_window

pytestmark = pytest.mark.live

READERS = 40  # more than a process has request threads (vantage6.handler.MAX_THREADS)


def test_downloads_left_unread_leave_threads_for_other_clients(live_db, live_folder, live_world):
    blobs = live_folder / "unread-blobs"
    blobs.mkdir(exist_ok=True)
    server = Daphne(live_db.process_env(V6_LARGE_RESULT_STORE=str(blobs)), live_folder)
    readers = []
    try:
        node = {"Authorization": f"Bearer {token(live_world.node_a)}"}
        stored = requests.post(
            f"{server.url}/api/blobstream", data=b"x" * (16 * 2**20), headers=node, timeout=60
        )
        assert stored.status_code == 201, stored.text
        name = stored.json()["uuid"]
        run = make_run(live_world)
        Run.objects.using(LIVE).filter(pk=run.pk).update(result=name, blob_storage_used=True)
        request = f"GET /api/blobstream/{name} HTTP/1.1\r\nHost: x\r\n{_header(node)}\r\n\r\n".encode()
        for _ in range(READERS):
            reader = small_window(server.port)
            reader.sendall(request)
            readers.append(reader)
        time.sleep(1)  # each answer has filled its connection's buffers and waits

        other = {"Authorization": f"Bearer {token(make_user(live_world.org_b, roles=('Researcher',)))}"}
        started = time.monotonic()
        answer = requests.get(f"{server.url}/api/user", headers=other, timeout=30)
        assert answer.status_code == 200
        assert time.monotonic() - started < 2
        assert readers[0].recv(4096).startswith(b"HTTP/1.1 200")  # the downloads did start
    finally:
        for reader in readers:
            reader.close()
        server.stop()


def _header(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}" for name, value in headers.items())
