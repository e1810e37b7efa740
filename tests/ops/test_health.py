"""/api/health: the database and, when configured, RabbitMQ (a real AMQP login), answered in bounded
time, with a 503 naming what is down; anonymous polling cannot turn into a flood of broker logins."""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import requires_services
from vantage6 import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rabbitmq_check(monkeypatch):
    monkeypatch.setattr(health, "rabbitmq_ok", health.RabbitmqCheck())


class Listener:
    """A TCP port that accepts connections and never answers (a hung broker); counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_without_rabbitmq_only_the_database_is_reported(api, settings):
    settings.RABBITMQ_URI = None
    response = api.get("/api/health")
    assert (response.status_code, response.json()) == (200, {"database": True})


@requires_services("rabbitmq")
def test_a_reachable_broker_is_up(api, settings):
    settings.RABBITMQ_URI = os.environ["V6_RABBITMQ_URI"]
    response = api.get("/api/health")
    assert (response.status_code, response.json()) == (200, {"database": True, "rabbitmq": True})


@requires_services("rabbitmq")
def test_a_broker_refusing_the_login_is_down(api, settings):
    url = urlsplit(os.environ["V6_RABBITMQ_URI"])
    settings.RABBITMQ_URI = url._replace(netloc=f"guest:wrong-password@{url.hostname}:{url.port}").geturl()
    response = api.get("/api/health")
    assert response.status_code == 503
    assert response.json() == {"msg": "Unavailable: rabbitmq", "database": True, "rabbitmq": False}


def test_a_stopped_broker_is_a_503_naming_it(api, settings):
    settings.RABBITMQ_URI = f"amqp://guest:guest@127.0.0.1:{closed_port()}"
    response = api.get("/api/health")
    assert response.status_code == 503
    assert response.json() == {"msg": "Unavailable: rabbitmq", "database": True, "rabbitmq": False}


def test_a_hung_broker_is_answered_in_time_and_polled_once(api, settings):
    listener = Listener()
    settings.RABBITMQ_URI = f"amqp://guest:guest@127.0.0.1:{listener.port}"
    try:
        started = time.monotonic()
        statuses = [api.get("/api/health").status_code for _ in range(20)]
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert statuses == [503] * 20
    assert elapsed < health.RABBITMQ_TIMEOUT_SECONDS + 1.5
    assert len(listener.accepted) == 1  # twenty anonymous polls, one broker connection


def test_polls_during_a_broker_check_do_not_wait_for_it(settings):
    """An anonymous flood of polls while the broker hangs must not hold the server's request threads."""
    from django.test import Client

    listener = Listener()
    settings.RABBITMQ_URI = f"amqp://guest:guest@127.0.0.1:{listener.port}"
    try:
        assert Client().get("/api/health").status_code == 503  # the first answer
        time.sleep(health.RABBITMQ_ANSWER_SECONDS)  # which is now due for another check
        durations: list[float] = []

        def poll() -> None:
            started = time.monotonic()
            assert Client().get("/api/health").status_code == 503
            durations.append(time.monotonic() - started)

        threads = [threading.Thread(target=poll) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        listener.close()
    assert len(durations) == 16
    # One poll makes the check; the others answer with the last result at once.
    assert sorted(durations)[-2] < 1.0, sorted(durations)
