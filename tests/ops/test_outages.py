"""A live server while its PostgreSQL restarts or its RabbitMQ dies (the private instances, stopped for
real): JSON 503s within a bound during the outage, and recovery without restarting the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import requests
import socketio
import websocket
from django.conf import settings

from tests.ops import services
from tests.realtime.helpers import NodeSocket
from tests.realtime.live import FAST_TIMERS, ROOT, Daphne

# A request during an outage is answered within this many seconds (connect_timeout is 5 s, but a
# refused connection, as from a stopped server, fails at once).
BOUND = 3
PASSWORD = "Outage-Passw0rd!"

pytestmark = services.marks()


class Stack:
    def __init__(
        self, folder: Path, postgres: services.PrivateService, rabbitmq: services.PrivateService
    ) -> None:
        self.folder = folder
        self.postgres, self.rabbitmq = postgres, rabbitmq
        self.server: Daphne | None = None

    def start(self) -> None:
        folder = self.folder
        self.postgres.new_database()
        base = {k: v for k, v in os.environ.items() if not k.startswith("V6_")}
        env = {
            **base,
            **FAST_TIMERS,
            "V6_DATA_DIR": str(folder / "server"),  # made private to its owner, unlike the services' folders
            "V6_DATABASE_URL": self.postgres.url,
            "V6_SECRET_KEY": settings.SECRET_KEY,
            "V6_JWT_SECRET_KEY": settings.JWT_SECRET_KEY,
            "V6_ROOT_PASSWORD": PASSWORD,
            "V6_BCRYPT_ROUNDS": "4",
            "V6_LOG_LEVEL": "warning",
        }
        subprocess.run(
            [sys.executable, "manage.py", "bootstrap"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        env["V6_RABBITMQ_URI"] = self.rabbitmq.url
        self.server = Daphne(env, folder)
        self.url = self.server.url

    def request(
        self, method: str, path: str, token: str | None = None, **kwargs
    ) -> tuple[requests.Response, float]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.monotonic()
        response = requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)
        return response, time.monotonic() - started

    def login(self) -> str:
        response, _ = self.request("POST", "/api/token/user", json={"username": "root", "password": PASSWORD})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def node_token(self) -> str:
        """The access token of a new node (of a new organization and collaboration)."""
        root = self.login()
        organization, _ = self.request("POST", "/api/organization", root, json={"name": "outage-org"})
        collaboration, _ = self.request(
            "POST",
            "/api/collaboration",
            root,
            json={
                "name": "outage-collab",
                "organization_ids": [organization.json()["id"]],
                "encrypted": False,
            },
        )
        node, _ = self.request(
            "POST",
            "/api/node",
            root,
            json={
                "organization_id": organization.json()["id"],
                "collaboration_id": collaboration.json()["id"],
            },
        )
        assert node.status_code == 201, node.text
        login, _ = self.request("POST", "/api/token/node", json={"api_key": node.json()["api_key"]})
        return login.json()["access_token"]

    def health_becomes(self, status: int, within: float) -> requests.Response:
        deadline = time.monotonic() + within
        while True:
            response, elapsed = self.request("GET", "/api/health")
            assert elapsed < BOUND
            if response.status_code == status or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.show_log()


@pytest.fixture(scope="module")
def stack(private_postgres, private_rabbitmq):
    with services.running(
        "v6-outage-", partial(Stack, postgres=private_postgres, rabbitmq=private_rabbitmq)
    ) as stack:
        yield stack


def test_database_restart_answers_503_then_recovers(stack):
    token = stack.login()
    assert stack.request("GET", "/api/health")[0].json() == {"database": True, "rabbitmq": True}

    stack.postgres.kill()
    during = [
        ("GET", "/api/health", None, {}),
        ("GET", "/api/user", token, {}),
        ("POST", "/api/token/user", None, {"json": {"username": "root", "password": PASSWORD}}),
        ("POST", "/api/organization", token, {"json": {"name": "made-during-the-outage"}}),
    ]
    for method, path, auth, kwargs in during:
        response, elapsed = stack.request(method, path, auth, **kwargs)
        assert (method, path, response.status_code) == (method, path, 503), response.text
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["msg"]
        assert elapsed < BOUND
    health, _ = stack.request("GET", "/api/health")
    assert (health.json()["msg"], health.json()["database"]) == ("Unavailable: database", False)

    stack.postgres.start()
    assert stack.health_becomes(200, within=15).json()["database"] is True
    users, _ = stack.request("GET", "/api/user", token)
    assert users.status_code == 200, users.text
    organizations, _ = stack.request("GET", "/api/organization", token, params={"name": "made-during%"})
    assert organizations.json()["data"] == []  # nothing was written during the outage
    log = stack.server.log.read_text()
    assert "Database unavailable, /api/organization answered 503" in log
    assert "Unhandled error" not in log


def test_socket_connects_during_a_database_outage_are_refused_cleanly_then_succeed(stack):
    token = stack.node_token()
    auth = {"Authorization": f"Bearer {token}"}
    ws_url = stack.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    opened = websocket.create_connection(ws_url, header=[f"Authorization: Bearer {token}"], timeout=10)
    assert opened.recv().startswith("0")  # Engine.IO open, while the database is up

    stack.postgres.kill()
    try:
        # A namespace connect: the Socket.IO connect error, and the connection dropped (the client
        # then reconnects by itself).
        opened.send("40/tasks,{}")
        while (packet := opened.recv()) == "2":  # Engine.IO pings meanwhile
            opened.send("3")
        assert packet.startswith('44/tasks,{"message":')
        assert opened.recv_data()[0] == websocket.ABNF.OPCODE_CLOSE
        # A handshake: a JSON 503 to the polling request, a refused upgrade to a websocket.
        handshake = requests.get(
            f"{stack.url}/socket.io/", params={"EIO": "4", "transport": "polling"}, headers=auth, timeout=10
        )
        assert handshake.status_code == 503
        assert handshake.headers["Content-Type"] == "application/json"
        assert handshake.json()["message"]
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(ws_url, header=[f"Authorization: Bearer {token}"], timeout=10)
        with pytest.raises(socketio.exceptions.ConnectionError):
            socketio.Client().connect(stack.url, headers=auth, namespaces=["/tasks"], wait_timeout=5)
    finally:
        stack.postgres.start()

    assert stack.health_becomes(200, within=15).status_code == 200
    node = NodeSocket(stack.url, token)
    try:
        node.wait_for("sync", timeout=15)
    finally:
        node.close()
    log = stack.server.log.read_text()
    assert "Traceback" not in log
    refusals = [line for line in log.splitlines() if "refused, database error: OperationalError" in line]
    assert len(refusals) == 4, refusals  # one line each: the namespace connect, three handshakes
    assert all("WARNING" in line for line in refusals)


def test_rabbitmq_outage_is_reported_while_the_api_keeps_answering(stack):
    token = stack.login()
    stack.rabbitmq.kill()
    health = stack.health_becomes(503, within=5)
    assert health.json() == {"msg": "Unavailable: rabbitmq", "database": True, "rabbitmq": False}
    for path in ("/api/version", "/api/user"):
        response, elapsed = stack.request("GET", path, token)
        assert response.status_code == 200 and elapsed < BOUND
