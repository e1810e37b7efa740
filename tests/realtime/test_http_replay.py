"""Answers of constant views given again by the HTTP protocol (``vantage6.http``) without the application.

In process: ``vantage6.http``'s connections on a fake transport, in front of the Django handler the
server runs. A replayed answer must be the full stack's, byte for byte but for its Date value, and only
for a request whose head is the same as the one first answered, without credentials, body or
forwarding headers; anything else goes through the application.
"""

from __future__ import annotations

import asyncio
import logging
import re
from types import SimpleNamespace

import pytest
from django.test import override_settings

from vantage6 import http
from vantage6.api.observability import METRICS
from vantage6.handler import PooledASGIHandler

DATE = re.compile(rb"\r\nDate: [^\r]*")
VERSION = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"


class Address:
    host, port = "127.0.0.1", 50000


class Transport:
    """What ``vantage6.http`` writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def registerProducer(self, _producer: object, _streaming: bool) -> None:
        pass

    def setTcpNoDelay(self, _enabled: bool) -> None:
        pass

    def getPeer(self) -> Address:
        return Address()

    getHost = getPeer

    def loseConnection(self) -> None:
        self.closed = True

    abortConnection = loseConnection

    def pauseProducing(self) -> None:
        pass

    resumeProducing = pauseProducing


class Server:
    """One server's connection factory in front of ``handler``, counting the application's calls."""

    def __init__(self, handler: PooledASGIHandler) -> None:
        self.handler = handler
        self.calls = 0
        # No websockets here: the factory only counts them against its connection cap.
        self.factory = http.Factory(self._application, SimpleNamespace(sockets=()), max_connections=100)
        self.factory.sweeping = True  # no periodic sweep: every connection here is short
        self.loop = asyncio.new_event_loop()

    async def _application(self, scope: dict, receive, send) -> None:
        self.calls += 1
        await self.handler(scope, receive, send)

    def connect(self) -> tuple[http.Connection, Transport]:
        connection, transport = self.factory.buildProtocol(None), Transport()
        connection.makeConnection(transport)
        return connection, transport

    def send(self, data: bytes, connection: http.Connection | None = None) -> bytes:
        """What the server writes for ``data`` on a connection (a new one unless given), all answered."""
        if connection is None:
            connection, transport = self.connect()
        else:
            transport = connection.transport
        start = len(transport.written)

        async def answered() -> None:
            connection.dataReceived(data)
            while connection.exchange is not None or self.factory.tasks:
                await asyncio.sleep(0.001)

        self.loop.run_until_complete(asyncio.wait_for(answered(), 10))
        return bytes(transport.written[start:])


@pytest.fixture
def server():
    with override_settings(CORS_ALLOWED_ORIGINS=["http://ui.example"]):
        served = Server(PooledASGIHandler())
        yield served
    served.loop.close()
    served.handler.executor.shutdown()


def undated(answer: bytes) -> bytes:
    assert answer.count(b"\r\nDate: ") == 1, answer
    return DATE.sub(b"", answer)


@pytest.mark.parametrize(
    ("head", "replayed"),
    [
        (VERSION, True),
        (b"HEAD /api/version HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"OPTIONS /api/version HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://ui.example\r\n\r\n", True),
        (b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://other.example\r\n\r\n", True),
        (b"GET /api/version?format=json HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", True),
        (b"GET /api/version HTTP/1.0\r\nHost: x\r\n\r\n", True),
        (b"GET /api/version HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", True),
        (b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n", True),
        # A CORS preflight is answered by the middleware, not by a view: through the application.
        (
            b"OPTIONS /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://ui.example\r\n"
            b"Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\r\n",
            False,
        ),
        # Without a Host, Django reads the address the connection came to: not the head alone.
        (b"GET /api/version HTTP/1.0\r\n\r\n", False),
        # Answers that are not a success.
        (b"DELETE /api/version HTTP/1.1\r\nHost: x\r\n\r\n", False),
        (b"GET /api/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ],
    ids=[
        "GET",
        "HEAD",
        "OPTIONS",
        "allowed origin",
        "other origin",
        "query",
        "1.0",
        "1.0 keep-alive",
        "1.1 close",
        "robots.txt",
        "preflight",
        "1.0 without host",
        "405",
        "404",
    ],
)
def test_a_replayed_answer_is_the_full_stacks_but_for_its_date(server, head, replayed):
    first = server.send(head)
    second = server.send(head)
    third = server.send(head)
    assert server.calls == (1 if replayed else 3)
    assert undated(second) == undated(first) == undated(third)
    if head.startswith(b"HEAD"):
        assert first.endswith(b"\r\n\r\n")


def test_a_view_not_declared_constant_is_always_called(server):
    """The docs page carries a nonce of its own each time: it must never be replayed."""
    head = b"GET /api/docs HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = {server.send(head) for _ in range(3)}
    assert server.calls == 3 and len(answers) == 3


def test_replays_follow_the_connections_framing_on_one_kept_alive_connection(server):
    connection, transport = server.connect()
    full = server.send(VERSION, connection)
    closing_head = b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    pipelined = server.send(VERSION * 500 + closing_head, connection)
    assert server.calls == 2  # the closing head once, then replays
    answers = pipelined.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 501
    assert {undated(b"HTTP/1.1 " + answer) for answer in answers[:-1]} == {undated(full)}
    assert answers[-1].endswith(b'Connection: close\r\n\r\n{"version":"4.15.2"}')
    # Once the connection is closing, nothing after its last answer is read.
    closing, closing_transport = server.connect()
    server.send(closing_head + VERSION, closing)
    assert closing_transport.closed and closing_transport.written.count(b"HTTP/1.1 200") == 1
    assert transport.closed and server.calls == 2


@pytest.mark.parametrize(
    ("first", "then"),
    [
        # CORS is by Origin: an answer for one origin is not given to another.
        (
            b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://ui.example\r\n\r\n",
            b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n\r\n",
        ),
        (
            b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n\r\n",
            b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: http://ui.example\r\n\r\n",
        ),
        # Credentials, cookies, a body or a proxy's say always go through the application.
        (VERSION, b"GET /api/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x.y.z\r\n\r\n"),
        (VERSION, b"GET /api/version HTTP/1.1\r\nHost: x\r\nCookie: sessionid=abc\r\n\r\n"),
        (VERSION, b"GET /api/version HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"),
        (VERSION, b"GET /api/version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        # Another host, path or version is another request.
        (VERSION, b"GET /api/version HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
        (VERSION, b"GET /api/version/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        (VERSION, b"GET /api/version HTTP/1.0\r\nHost: x\r\n\r\n"),
    ],
    ids=[
        "allowed, then other origin",
        "other, then allowed origin",
        "authorization",
        "cookie",
        "forwarded proto",
        "body length",
        "host",
        "path",
        "version",
    ],
)
def test_a_request_differing_from_a_replayed_one_gets_the_applications_answer(server, first, then):
    """The answer given is the one the application gives to that request on a server that kept none."""
    server.send(first)
    server.send(first)
    assert server.calls == 1
    answer = server.send(then)
    assert server.calls == 2
    reference = Server(server.handler).send(then)
    assert undated(answer) == undated(reference)


@pytest.mark.parametrize(
    ("origin", "allowed"), [(b"http://ui.example", True), (b"http://evil.example", False)], ids=["ui", "evil"]
)
def test_cors_of_a_replayed_answer_is_that_of_its_origin(server, origin, allowed):
    head = b"GET /api/version HTTP/1.1\r\nHost: x\r\nOrigin: " + origin + b"\r\n\r\n"
    server.send(head)
    replay = server.send(head)
    assert server.calls == 1
    assert (b"\r\nAccess-Control-Allow-Origin: " + origin + b"\r\n" in replay) is allowed
    assert b"Access-Control-Allow-Origin" in replay or not allowed


def test_a_replay_is_logged_as_the_request_it_answers(server, caplog):
    with caplog.at_level(logging.INFO, logger="vantage6.request"):
        server.send(VERSION)
        server.send(VERSION)
    assert server.calls == 1
    lines = [re.sub(r" [0-9.]+ms ", " ", record.getMessage()) for record in caplog.records]
    assert lines == ["GET /api/version 200 anonymous"] * 2
    assert caplog.records[1].fields["path"] == "/api/version"


def test_metrics_count_replays():
    key = ("GET", "api/version", 200)
    before = METRICS.requests.get(key, 0)
    with override_settings(METRICS_ENABLED=True):
        metered = Server(PooledASGIHandler())
        metered.send(VERSION)
        metered.send(VERSION)
    metered.loop.close()
    metered.handler.executor.shutdown()
    assert metered.calls == 1
    assert METRICS.requests.get(key, 0) == before + 2


def test_kept_answers_are_bounded(server, monkeypatch):
    monkeypatch.setattr(http, "MAX_REPLAYS", 4)
    for agent in range(10):
        server.send(b"GET /api/version HTTP/1.1\r\nHost: x\r\nUser-Agent: %d\r\n\r\n" % agent)
    assert 1 <= len(server.factory.answers) <= 4
    huge = b"GET /api/version HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"a" * http.MAX_REPLAY_HEAD + b"\r\n\r\n"
    server.send(huge)
    server.send(huge)
    assert server.calls == 12  # a head over MAX_REPLAY_HEAD is never kept


def test_a_stopping_server_answers_through_the_application_and_closes(server):
    server.send(VERSION)
    server.factory.draining = True
    connection, transport = server.connect()
    answer = server.send(VERSION, connection)
    assert server.calls == 2
    assert b"\r\nConnection: close\r\n" in answer and transport.closed


def test_a_client_that_does_not_read_gets_no_further_replays(server):
    server.send(VERSION)
    connection, transport = server.connect()

    async def full() -> None:
        connection.pauseProducing()  # the transport's buffer is full

    server.loop.run_until_complete(full())
    server.send(VERSION * 3, connection)
    assert transport.written.count(b"HTTP/1.1 200") == 1 and connection.held
    connection.resumeProducing()
    assert transport.written.count(b"HTTP/1.1 200") == 3
    assert server.calls == 1
