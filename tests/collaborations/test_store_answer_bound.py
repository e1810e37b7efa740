"""An algorithm store's answer is read up to a bound: a store chosen by a collaboration admin cannot make
the server read (and hold in memory) an answer of any size until the call's timeout."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from collaborations.models import AlgorithmStore
from tests.collaborations.helpers import headers_of

pytestmark = pytest.mark.django_db


def test_an_endless_store_answer_is_read_no_further_than_the_bound(api, world, settings):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True  # the store runs on this machine
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 5
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def flood() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            peer.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 100000000000\r\n\r\n")
            while not stop.is_set():
                try:
                    peer.sendall(b" " * 65536)
                except OSError:
                    return  # the server stopped reading and closed

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    body = {
        "name": "store",
        "algorithm_store_url": url,
        "server_url": "https://v6.example.org/api",
        "force": True,
    }
    started = time.monotonic()
    try:
        response = api.post("/api/algorithmstore", body, format="json", **headers_of(world.org_a, "Root"))
    finally:
        stop.set()
        flooder.join(5)
        listener.close()

    assert time.monotonic() - started < settings.ALGORITHM_STORE_TIMEOUT_SECONDS
    # Its 201 is not taken: the answer was cut, and the store is not linked.
    assert response.status_code == 502, response.content
    assert response.json() == {"msg": "Algorithm store error: its answer is longer than 1000000 bytes"}
    assert not AlgorithmStore.objects.exists()
