"""Clients that upload a large body slowly (within the server's least progress, so not cut), more of them
than a process has request threads: a body is read in the event loop, never in a request thread, so the
other clients are answered meanwhile."""

from __future__ import annotations

import time

import pytest
import requests

from tests.realtime.helpers import make_user, token
from tests.realtime.live import Daphne
from tests.realtime.rawhttp import connect

pytestmark = pytest.mark.live

UPLOADERS = 40  # more than a process has request threads (vantage6.handler.MAX_THREADS)


@pytest.mark.parametrize("path", ["/api/blobstream", "/api/task"])
def test_slow_uploads_leave_threads_for_other_clients(live_db, live_folder, live_world, path):
    blobs = live_folder / "slow-blobs"
    blobs.mkdir(exist_ok=True)
    server = Daphne(live_db.process_env(V6_LARGE_RESULT_STORE=str(blobs)), live_folder)
    uploads = []
    try:
        node = token(live_world.node_a)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {node}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {8 * 2**20}\r\n\r\n"
        ).encode()
        for _ in range(UPLOADERS):
            upload = connect(server.port)
            upload.sendall(head + b"x" * 8192)  # then nothing more for now
            uploads.append(upload)
        time.sleep(1)

        other = {"Authorization": f"Bearer {token(make_user(live_world.org_b, roles=('Researcher',)))}"}
        started = time.monotonic()
        answer = requests.get(f"{server.url}/api/user", headers=other, timeout=30)
        assert answer.status_code == 200
        assert time.monotonic() - started < 2
        uploads[0].settimeout(0.2)
        with pytest.raises(TimeoutError):  # the uploads still go on: no answer yet
            uploads[0].recv(1)
    finally:
        for upload in uploads:
            upload.close()
        server.stop()
