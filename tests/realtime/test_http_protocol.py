"""The server's HTTP/1.1 protocol, spoken over raw sockets to a real ``python -m vantage6.serve``."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import pytest
import requests

from tests.realtime.helpers import make_user, token
from tests.realtime.live import Daphne
from tests.realtime.rawhttp import VERSION, Reader, connect, log_size, still_serving, wait_until

LOGIN = b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def served(live_db, live_folder):
    blobs = live_folder / "http-blobs"
    blobs.mkdir(exist_ok=True)
    daphne = Daphne(live_db.process_env(V6_LARGE_RESULT_STORE=str(blobs), V6_LOG_LEVEL="info"), live_folder)
    yield daphne
    daphne.stop()


def test_kept_alive_connection_answers_pipelined_requests_in_order(served):
    ping = LOGIN + b"Content-Length: 2\r\n\r\n{}"
    with connect(served.port) as sock:
        sock.sendall(VERSION + ping + VERSION + b"HEAD /api/version HTTP/1.1\r\nHost: x\r\n\r\n" + VERSION)
        reader = Reader(sock)
        answers = [reader.response() for _ in range(3)]
        head = reader.response(head_only=True)
        last = reader.response()
    assert [status for status, _, _ in answers] == [200, 400, 200]
    assert "version" in json.loads(answers[0][2]) and "msg" in json.loads(answers[1][2])
    assert head[0] == 200 and int(head[1]["content-length"]) == len(answers[2][2])
    assert last[0] == 200 and last[2] == answers[0][2]


def test_a_constant_answer_is_given_again_as_first_given_and_logged_each_time(served):
    """``/api/version`` is replayed by the protocol after its first answer: the same bytes but the Date,
    also on a connection whose client reads its answers late, and one request log line each."""
    head = b"GET /api/version HTTP/1.1\r\nHost: replayed.example\r\nUser-Agent: replay-test\r\n\r\n"
    # A replayed answer is logged just after it is written: an earlier test's last line may come late.
    # This request's line follows it (the server reads this request after that write), then the count starts.
    mark = log_size(served.log)
    with connect(served.port) as sock:
        sock.sendall(b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Reader(sock).response()[0] == 200
    assert wait_until(lambda: _log_lines(served, mark, "GET /robots.txt 200"))
    since = log_size(served.log)
    with connect(served.port) as sock:
        sock.sendall(head)
        reader = Reader(sock)
        first = reader.response()
        sock.sendall(head * 200)
        time.sleep(0.2)  # answered while the client does not read
        answers = [reader.response() for _ in range(200)]
    assert first[0] == 200 and "date" in first[1]
    assert all(
        (status, _undated(fields), body) == (200, _undated(first[1]), first[2])
        for status, fields, body in answers
    )
    deadline = time.monotonic() + 5
    while (logged := _log_lines(served, since, "GET /api/version 200")) < 201 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged == 201


def _undated(fields: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in fields.items() if name != "date"}


def _log_lines(daphne: Daphne, since: int, text: str) -> int:
    with daphne.log.open("rb") as file:
        file.seek(since)
        return file.read().decode(errors="replace").count(text)


def test_response_head_says_no_server_software(served):
    with connect(served.port) as sock:
        sock.sendall(VERSION)
        status, fields, _ = Reader(sock).response()
    assert status == 200
    assert "server" not in fields
    assert fields["date"].endswith(" GMT")
    assert "connection" not in fields  # HTTP/1.1: kept alive without saying so


@pytest.mark.parametrize(
    ("request_head", "connection"),
    [
        (b"GET /api/version HTTP/1.0\r\n\r\n", "close"),
        (b"GET /api/version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive"),
        (b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "close"),
    ],
    ids=["1.0", "1.0 keep-alive", "1.1 close"],
)
def test_connection_persistence_follows_the_http_version(served, request_head, connection):
    with connect(served.port) as sock:
        sock.sendall(request_head)
        reader = Reader(sock)
        status, fields, _ = reader.response()
        assert (status, fields.get("connection")) == (200, connection)
        if connection == "close":
            assert reader.closed()
        else:
            sock.sendall(request_head)
            assert reader.response()[0] == 200


def test_a_chunked_body_with_extensions_and_trailer_is_read(served):
    body = b'{"username": "nobody", "password": "wrong"}'
    chunks = (
        b"5;ext=1\r\n"
        + body[:5]
        + b"\r\n"
        + b"%x\r\n" % (len(body) - 5)
        + body[5:]
        + b"\r\n0\r\nX-T: 1\r\n\r\n"
    )
    with connect(served.port) as sock:
        sock.sendall(LOGIN + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + VERSION)
        reader = Reader(sock)
        status, _, answer = reader.response()
        assert (status, json.loads(answer)) == (401, {"msg": "Failed to login"})  # the body was read
        assert reader.response()[0] == 200


def test_expect_100_continue_is_answered_before_the_body_comes(served):
    body = b'{"username": "nobody", "password": "wrong"}'
    head = LOGIN + b"Expect: 100-continue\r\n"
    with connect(served.port) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
        reader = Reader(sock)
        assert reader.response()[0] == 100
        sock.sendall(body)
        assert reader.response()[0] == 401


MALFORMED = {
    "garbage": b"GARBAGE\r\n\r\n",
    "target not a path": b"GET api/version HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in target": b"GET /api/ver sion HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-ascii target": b"GET /api/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown version": b"GET /api/version HTTP/2.0\r\nHost: x\r\n\r\n",
    "header without colon": b"GET /api/version HTTP/1.1\r\nHost x\r\n\r\n",
    "space before colon": b"GET /api/version HTTP/1.1\r\nHost : x\r\n\r\n",
    "folded header": b"GET /api/version HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    "control in value": b"GET /api/version HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
    "bare LF in value": b"GET /api/version HTTP/1.1\r\nX-A: 1\nX-B: 2\r\nHost: x\r\n\r\n",
    "bad length": b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "two lengths": LOGIN + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "length and chunked": (
        b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "other coding": b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "bad chunk size": b"POST /api/token/user HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_refused_and_its_connection_closed(served, request_bytes):
    with connect(served.port) as sock:
        sock.sendall(request_bytes + VERSION)  # nothing after a malformed request is read
        reader = Reader(sock)
        status, fields, body = reader.response()
        assert status in (400, 501, 505)
        assert fields["connection"] == "close" and "msg" in json.loads(body)
        assert reader.closed()
    still_serving(served.port)
    assert "Traceback" not in served.log.read_text()


@pytest.mark.parametrize(
    "extra",
    [b"X-Big: " + b"a" * 70_000 + b"\r\n", b"".join(b"X-%d: 1\r\n" % n for n in range(101))],
    ids=["head too large", "too many fields"],
)
def test_an_oversized_request_head_is_refused(served, extra):
    with connect(served.port) as sock:
        with contextlib.suppress(OSError):  # refused before all of it was read
            sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        reader = Reader(sock)
        assert reader.response()[0] == 431
        assert reader.closed()
    still_serving(served.port)


def test_an_incomplete_request_head_times_out(served):
    """A slow client cannot hold a connection (and its buffers) by never finishing its request."""
    with connect(served.port) as sock:
        sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        reader = Reader(sock)
        status, fields, _ = reader.response()
        assert (status, fields["connection"]) == (408, "close")
        assert reader.closed()
    assert 9 < time.monotonic() - started < 15
    still_serving(served.port)


def test_a_stalled_body_times_out(hasty):
    head = LOGIN + b"Content-Length: 10\r\n\r\n"
    with connect(hasty.port) as sock:
        sock.settimeout(15)
        sock.sendall(head + b"{")
        reader = Reader(sock)
        assert reader.response()[0] == 408
        assert reader.closed()


def test_a_websocket_upgrade_follows_http_requests_on_the_same_connection(served, live_world):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    upgrade = (
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Authorization: Bearer " + token(researcher).encode() + b"\r\n\r\n"
    )
    with connect(served.port) as sock:
        sock.sendall(VERSION + VERSION + upgrade)
        reader = Reader(sock)
        assert [reader.response()[0] for _ in range(2)] == [200, 200]
        status, fields, _ = reader.response()
        assert (status, fields["sec-websocket-accept"]) == (101, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        first = reader._exactly(2)
        assert first[0] == 0x81  # a text frame: Engine.IO's open packet
        size = first[1] if first[1] < 126 else int.from_bytes(reader._exactly(2), "big")
        assert reader._exactly(size)[:1] == b"0"


def test_blobs_stream_up_and_down(served, live_world):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    headers = {"Authorization": f"Bearer {token(researcher)}"}
    auth = b"Authorization: %s\r\n" % headers["Authorization"].encode()
    data = bytes(range(256)) * (6 * 2**20 // 256)
    upload = b"POST /api/blobstream HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" + auth
    with connect(served.port) as sock:
        sock.sendall(upload + b"Content-Length: %d\r\n\r\n" % len(data))
        sock.sendall(data)
        reader = Reader(sock)
        status, _, answer = reader.response()
        assert status == 201, answer
        uuid = json.loads(answer)["uuid"]
        task = {
            "name": "t",
            "image": "some/image",
            "collaboration_id": live_world.collab_ab.pk,
            "organizations": [{"id": live_world.org_b.pk, "input": uuid}],
            "databases": [{"label": "default"}],
        }
        created = requests.post(f"{served.url}/api/task", json=task, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        sock.sendall(b"GET /api/blobstream/%s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (uuid.encode(), auth))
        status, fields, body = reader.response()
    assert status == 200 and body == data
    assert "transfer-encoding" in fields or int(fields["content-length"]) == len(data)


def test_a_graceful_stop_answers_kept_alive_connections_once_and_drops_long_polls(live_db, live_folder):
    """The connections of a trusted proxy (the test's address) stay open for the proxy to close; those of
    other clients are closed at once (``test_shutdown_idle``)."""
    daphne = Daphne(live_db.process_env(V6_TRUSTED_PROXIES="127.0.0.1/32"), live_folder)
    try:
        with connect(daphne.port) as kept, connect(daphne.port) as poll:
            kept.sendall(VERSION)
            kept_reader = Reader(kept)
            assert kept_reader.response()[0] == 200
            poll.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
            poll_reader = Reader(poll)
            status, _, opened = poll_reader.response()
            sid = json.loads(opened[1:])["sid"].encode()
            poll.sendall(b"GET /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n" % sid)
            time.sleep(0.5)  # the long-poll waits for packets

            daphne.process.send_signal(signal.SIGTERM)
            assert poll_reader.closed()  # dropped without an answer: the client reconnects elsewhere
            time.sleep(1)
            assert daphne.process.poll() is None  # the idle kept-alive connection is the proxy's to close
            kept.sendall(VERSION)
            status, fields, _ = kept_reader.response()
            assert (status, fields["connection"]) == (200, "close")
            assert kept_reader.closed()
        assert daphne.process.wait(10) == 0
    finally:
        daphne.show_log()
        daphne.stop()
