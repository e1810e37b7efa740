"""Requests through the ASGI application (as daphne serves them) answer as through Django's own handler."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.layers import channel_layers
from django.core.signals import request_finished

from tests.factories import bearer, make_user
from tests.realtime.helpers import IN_MEMORY
from tests.speed import urls
from vantage6.handler import PooledASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def call(app, path: str, *, method: str = "GET", headers: dict | None = None, body: bytes = b""):
    """(status, headers, body, body messages) of one request through ``app`` (a header's value: text, or
    the bytes sent as they are)."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": route, "raw_path": route.encode(), "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7601),
        "headers": [(b"host", b"127.0.0.1:7601")]
        + [(k.lower().encode(), v if isinstance(v, bytes) else v.encode())
           for k, v in (headers or {}).items()],
    }  # fmt: skip

    async def run():
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": body})
        start = await communicator.receive_output(10)
        messages = [await communicator.receive_output(10)]
        while messages[-1].get("more_body"):
            messages.append(await communicator.receive_output(10))
        await communicator.wait(10)
        return start, messages

    start, messages = async_to_sync(run)()
    content = b"".join(m.get("body", b"") for m in messages)
    return start["status"], [(k.decode(), v.decode()) for k, v in start["headers"]], content, messages


@pytest.fixture
def application(monkeypatch, settings):
    from vantage6 import asgi

    # Each call runs in a throwaway event loop of its own: the Socket.IO server would connect the
    # RabbitMQ layer there (its housekeeping, its process channel), and channels-rabbitmq's reader, once
    # consuming, cannot be cancelled when that loop closes. These requests are about the HTTP handler
    # only, so the layer is the in-memory one.
    monkeypatch.setattr(asgi.server, "ensure_housekeeping", lambda: None)
    settings.CHANNEL_LAYERS = IN_MEMORY
    channel_layers.backends.clear()
    yield asgi.application
    channel_layers.backends.clear()


def auth(user) -> dict:
    return {"Authorization": bearer(user)["HTTP_AUTHORIZATION"]}


@pytest.mark.parametrize(
    "path, who",
    [
        ("/api/version", None),
        ("/api/health", None),
        ("/api/organization?sort=-name&per_page=2", "root"),
        ("/api/user", "root"),
        ("/api/user", "viewer"),
        ("/api/task", None),
        ("/api/nothing-here", None),
        ("/api/organization?page=0", "root"),
    ],
)
def test_answers_as_the_test_client_does(api, world, application, path, who):
    user = {"root": make_user(world.org_a, "Root"), "viewer": make_user(world.org_b, "Viewer"), None: None}[
        who
    ]
    headers = auth(user) if user else {}
    status, asgi_headers, body, _ = call(application, path, headers=headers)
    expected = api.get(path, **(bearer(user) if user else {}))
    assert status == expected.status_code
    assert body == expected.content
    assert sorted(asgi_headers) == sorted(expected.items())


def test_a_body_is_read(world, application):
    user = make_user(world.org_a, "Researcher")
    body = json.dumps({"username": user.username, "password": "Password1!"}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    status, _, content, _ = call(application, "/api/token/user", method="POST", headers=headers, body=body)
    assert status == 200, content
    assert {"access_token", "refresh_token"} <= set(json.loads(content))


def test_socket_io_is_still_routed(application):
    status, _, content, _ = call(application, "/socket.io/?EIO=4&transport=polling")
    assert status == 200
    assert content.startswith(b"0{") and b'"sid"' in content


def test_a_stream_is_sent_chunk_by_chunk_and_closed(settings):
    settings.ROOT_URLCONF = "tests.speed.urls"
    finished = []

    def on_finished(**_kwargs) -> None:
        finished.append(True)

    request_finished.connect(on_finished, dispatch_uid="stream-finished")
    urls.closed.clear()
    try:
        status, headers, content, messages = call(PooledASGIHandler(), "/api/test-stream")
    finally:
        request_finished.disconnect(dispatch_uid="stream-finished")
    assert status == 200 and ("Content-Type", "application/octet-stream") in headers
    assert content == b"".join(urls.CHUNKS)
    assert [len(m.get("body", b"")) for m in messages] == [65536, 70_000 - 65536, 0, 10, 0]
    assert messages[-1].get("more_body", False) is False
    assert urls.closed == [True] and len(finished) == 1


def test_a_bug_is_a_json_500(settings):
    settings.ROOT_URLCONF = "tests.speed.urls"
    status, _, content, _ = call(PooledASGIHandler(), "/api/test-broken")
    assert status == 500
    assert "msg" in json.loads(content)


def test_a_requests_event_is_sent_after_its_answer_without_holding_its_thread(
    world, application, monkeypatch
):
    from vantage6 import asgi

    order: list[object] = []

    async def fan_out(_namespace: str, room: str, _packet: str) -> None:
        order.append(("event", room))

    monkeypatch.setattr(asgi.server, "_fan_out", fan_out)
    user = make_user(world.org_a, "Researcher")
    plain = base64.b64encode(json.dumps({"method": "m"}).encode()).decode()
    body = json.dumps(
        {
            "name": "t",
            "image": "some/image",
            "collaboration_id": world.collab_ab.pk,
            "organizations": [{"id": org.pk, "input": plain} for org in (world.org_a, world.org_b)],
            "databases": [{"label": "default"}],
        }
    ).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/task", "raw_path": b"/api/task", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 7601),
        "headers": [
            (b"host", b"127.0.0.1:7601"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", auth(user)["Authorization"].encode()),
        ],
    }  # fmt: skip

    async def receive() -> dict:
        return {"type": "http.request", "body": body}

    async def send(message: dict) -> None:
        order.append(message.get("status", message["type"]))

    async def run() -> None:
        await application(scope, receive, send)
        for _ in range(3):  # the turns of the loop after the answer
            await asyncio.sleep(0)

    async_to_sync(run)()
    # Before, the request's thread published and waited for the loop (in memory): its events came first.
    assert order[:2] == [201, "http.response.body"]
    assert order[2:] and all(entry[0] == "event" for entry in order[2:])
