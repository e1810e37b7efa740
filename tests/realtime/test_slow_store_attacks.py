"""An algorithm store that answers slowly, as a collaboration's administrator can link one (any URL) and
any researcher of the collaboration can then name it in a new task: while the server waits for it,
every other write of the deployment goes on (on SQLite, no write lock is held over the wait)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from collaborations.models import AlgorithmStore
from tests.realtime.helpers import log_in, make_user, token
from tests.realtime.live import LIVE, Daphne

pytestmark = pytest.mark.live

# Longer than a writer waits for the write lock (the database timeout, 5 s), shorter than the store's.
STALL_SECONDS = 7


@pytest.fixture
def slow_store():
    """A store that answers every request STALL_SECONDS after it came; ``asked`` once one did."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked = threading.Event()

    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            asked.set()
            time.sleep(STALL_SECONDS)
            body = b'{"data": [{"digest": ""}]}'
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            connection.sendall(head.encode() + body)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", asked
    listener.close()


@pytest.fixture
def store_server(live_db, live_folder):
    """A server that may reach a store on this machine, and waits for it longer than the stall."""
    env = live_db.process_env(V6_ALGORITHM_STORE_ALLOW_PRIVATE="1", V6_ALGORITHM_STORE_TIMEOUT_SECONDS="20")
    daphne = Daphne(env, live_folder)
    yield daphne
    daphne.show_log()
    daphne.stop()


def test_a_task_waiting_for_a_slow_store_holds_no_other_write_up(store_server, slow_store, live_world):
    url, asked = slow_store
    collaboration = live_world.collab_ab
    store = AlgorithmStore.objects.using(LIVE).create(name="slow", url=url, collaboration=collaboration)
    researcher, other = make_user(live_world.org_a, roles=("Researcher",)), make_user(live_world.org_b)
    body = {
        "name": "t",
        "image": "some/image",
        "collaboration_id": live_world.collab_ab.pk,
        "store_id": store.pk,
        "server_url": f"{store_server.url}/api",
        "organizations": [{"id": live_world.org_a.pk, "input": "e30="}],
    }
    answers: list[requests.Response] = []

    def create_task() -> None:
        answers.append(
            requests.post(
                f"{store_server.url}/api/task",
                json=body,
                headers={"Authorization": f"Bearer {token(researcher)}"},
                timeout=60,
            )
        )

    creating = threading.Thread(target=create_task)
    creating.start()
    try:
        assert asked.wait(20), f"the store was never asked: {answers and answers[0].text}"
        # Another client's login (it writes: the guess counted, the session) while the store stalls.
        started = time.monotonic()
        log_in(store_server.url, other)
        assert time.monotonic() - started < STALL_SECONDS / 2
    finally:
        creating.join(60)
    assert answers and answers[0].status_code == 201, answers and answers[0].text
