"""Stopping a server (SIGTERM) closes the idle kept-alive connections of its clients at once instead of
waiting ``IDLE_SECONDS`` for the clients to close them, while a request in progress gets its whole answer.
A trusted proxy's idle connections are still left for the proxy to close
(``test_http_protocol.test_a_graceful_stop_answers_kept_alive_connections_once_and_drops_long_polls``)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from types import SimpleNamespace

from tests.realtime.live import Daphne
from tests.realtime.rawhttp import VERSION, Reader, connect
from tests.realtime.test_http_replay import Transport
from vantage6 import http
from vantage6.serve import IDLE_SECONDS

LOGIN = b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
BOUND = IDLE_SECONDS / 2  # seconds from SIGTERM to the process's exit, clearly within the old wait


def test_a_stop_closes_idle_connections_at_once_and_finishes_a_request_in_progress(live_db, live_folder):
    daphne = Daphne(live_db.process_env(), live_folder)
    try:
        with connect(daphne.port, timeout=BOUND) as idle, connect(daphne.port) as busy:
            idle_reader = Reader(idle)
            idle.sendall(VERSION)
            assert idle_reader.response()[0] == 200  # kept alive, then idle
            body = json.dumps({"username": "nobody", "password": "not this"}).encode()
            busy.sendall(LOGIN + b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:5]))  # in progress

            stopped = time.monotonic()
            daphne.process.send_signal(signal.SIGTERM)
            assert idle_reader.closed()  # without an answer: a TimeoutError if left open
            closed_after = time.monotonic() - stopped
            busy.sendall(body[5:])
            status, fields, answer = Reader(busy).response()
            answered = time.monotonic()
            assert daphne.process.wait(IDLE_SECONDS * 2) == 0
            exited_after = time.monotonic() - answered
        assert (status, fields["connection"]) == (401, "close")
        assert json.loads(answer)["msg"]
        # The exit from the answer on: the request's own time (a login's bcrypt checks, seconds on a loaded
        # machine) is not the stop's.
        assert closed_after < BOUND and exited_after < BOUND, (closed_after, exited_after)
    finally:
        daphne.show_log()
        daphne.stop()


async def _ok(_scope: dict, _receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_an_idle_connection_whose_next_request_is_in_its_socket_is_not_closed():
    """A request that reached the socket as the stop began, before the loop read it, is read and answered:
    the connection is not closed under it."""
    factory = http.Factory(_ok, SimpleNamespace(sockets=()), max_connections=10)
    factory.sweeping = True  # no periodic sweep
    connection, transport = factory.buildProtocol(None), Transport()
    connection.makeConnection(transport)

    async def first() -> None:
        connection.dataReceived(VERSION)
        await asyncio.sleep(0)

    asyncio.run(first())
    assert transport.written.startswith(b"HTTP/1.1 200") and not transport.closed  # kept alive
    ours, theirs = socket.socketpair()
    with ours, theirs:
        connection.socket = ours  # the connection's socket, which the loop has not read yet
        theirs.sendall(VERSION)
        assert factory.close_idle() == 0 and not transport.closed
        ours.recv(1024)  # nothing waits in the socket any more
        assert factory.close_idle() == 1 and transport.closed
