"""Request bodies over the limit, against a real daphne: 413 before the body is stored, memory flat."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from accounts.tokens import reset_token
from tests.factories import PASSWORD
from tests.realtime.helpers import make_user, token, token_pair
from tests.realtime.live import Daphne

MIB = 2**20
LIMIT_MIB, BLOB_LIMIT_MIB = 1, 64
OVERSIZED = 32 * MIB
TOO_LARGE = {"msg": f"The request body is larger than the limit of {LIMIT_MIB} MiB"}


@pytest.fixture(scope="module")
def limited(live_db, live_folder):
    blobs = live_folder / "blobs"
    blobs.mkdir(exist_ok=True)
    daphne = Daphne(
        live_db.process_env(
            V6_MAX_BODY_MB=str(LIMIT_MIB),
            V6_MAX_BLOB_UPLOAD_MB=str(BLOB_LIMIT_MIB),
            V6_LARGE_RESULT_STORE=str(blobs),
        ),
        live_folder,
    )
    yield daphne
    daphne.stop()


def _send(port: int, head: str, body_parts=(), *, read_early: bool = False) -> tuple[int, dict | None]:
    """A raw HTTP/1.1 request (the body from ``body_parts``); the status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        if read_early:
            return _answer(sock)
        try:
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass  # the server may stop reading once it has answered
        return _answer(sock)


def _answer(sock: socket.socket) -> tuple[int, dict | None]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    is_json = b"application/json" in head.lower()
    return status, json.loads(body) if is_json and body else None


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _chunked(total: int, size: int = 64 * 1024):
    chunk = b"x" * size
    for _ in range(total // size):
        yield b"%x\r\n%s\r\n" % (size, chunk)
    yield b"0\r\n\r\n"


def _declared(path: str, length: int, *extra: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    return "\r\n".join([*lines, f"Content-Length: {length}", *extra, ""]) + "\r\n"


def _streamed(path: str, *extra: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    return "\r\n".join([*lines, "Transfer-Encoding: chunked", *extra, ""]) + "\r\n"


def _body(size: int):
    chunk = b"x" * (256 * 1024)
    for _ in range(size // len(chunk)):
        yield chunk


def test_declared_oversized_body_is_refused_before_it_is_sent(limited):
    """With ``Expect: 100-continue`` the answer comes from the headers alone."""
    head = _declared("/api/token/user", 80 * MIB, "Expect: 100-continue")
    assert _send(limited.port, head, read_early=True) == (413, TOO_LARGE)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_repeated_oversized_bodies_leave_memory_flat(limited, streamed):
    head = _streamed("/api/token/user") if streamed else _declared("/api/token/user", OVERSIZED)
    body = _chunked(OVERSIZED) if streamed else _body(OVERSIZED)
    assert _send(limited.port, head, body) == (413, TOO_LARGE)  # warm-up: code and buffers loaded
    before = limited.rss_kib()
    for _ in range(20):
        body = _chunked(OVERSIZED) if streamed else _body(OVERSIZED)
        assert _send(limited.port, head, body) == (413, TOO_LARGE)
    growth_mib = (limited.rss_kib() - before) / 1024
    assert growth_mib < 8, f"RSS grew {growth_mib:.1f} MiB over 20 refused {OVERSIZED // MIB} MiB bodies"


def test_body_within_the_limit_is_served(limited):
    body = json.dumps({"username": "nobody", "password": "x" * (LIMIT_MIB * MIB - 100)}).encode()
    status, answer = _send(limited.port, _declared("/api/token/user", len(body)), [body])
    assert (status, answer["errors"]) == (
        400,
        {"password": ["Ensure this field has no more than 128 characters."]},
    )


def test_blob_uploads_with_an_access_token_have_the_larger_limit(live_world, limited):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    auth = f"Authorization: Bearer {token(researcher)}"
    size = 2 * LIMIT_MIB * MIB
    head = _declared("/api/blobstream", size, auth).replace("application/json", "application/octet-stream")
    status, answer = _send(limited.port, head, _body(size))
    assert status == 201, answer

    too_big = _declared("/api/blobstream", (BLOB_LIMIT_MIB + 1) * MIB, auth, "Expect: 100-continue")
    assert _send(limited.port, too_big, read_early=True) == (
        413,
        {"msg": f"The request body is larger than the limit of {BLOB_LIMIT_MIB} MiB"},
    )


def test_large_blob_uploads_stream_through_in_flat_memory(live_world, limited):
    """daphne would hold a whole body in memory on its way to the application; uploads go through
    in chunks."""
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    auth = f"Authorization: Bearer {token(researcher)}"
    size = 48 * MIB

    def upload(length: int) -> tuple[int, dict | None]:
        head = _declared("/api/blobstream", length, auth).replace(
            "application/json", "application/octet-stream"
        )
        return _send(limited.port, head, _body(length))

    assert upload(4 * MIB)[0] == 201  # warm-up
    before = limited.rss_kib()
    for _ in range(3):
        status, answer = upload(size)
        assert status == 201, answer
    growth_mib = (limited.rss_kib() - before) / 1024
    assert growth_mib < 16, f"RSS grew {growth_mib:.1f} MiB over three {size // MIB} MiB uploads"


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "Authorization: Bearer not-a-token",
        "Authorization: Bearer {refresh}",
        "Authorization: Bearer {reset}",
    ],
    ids=["anonymous", "bad token", "refresh token", "password reset token"],
)
def test_blob_uploads_without_an_access_token_have_the_general_limit(live_world, limited, auth):

    researcher = make_user(live_world.org_a, roles=("Researcher",))
    auth = auth.format(refresh=token_pair(researcher)[1], reset=reset_token(researcher.pk, "password", "any"))
    head = _declared(
        "/api/blobstream", 2 * LIMIT_MIB * MIB, *([auth] if auth else []), "Expect: 100-continue"
    )
    assert _send(limited.port, head, read_early=True) == (413, TOO_LARGE)


def test_a_kept_alive_connection_serves_requests_after_a_large_body(live_world, limited):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    headers = {"Authorization": f"Bearer {token(researcher)}", "Content-Type": "application/octet-stream"}
    connection = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=30)
    try:
        connection.connect()
        first_socket = connection.sock
        for _ in range(2):
            connection.request("POST", "/api/blobstream", body=b"x" * (2 * MIB), headers=headers)
            response = connection.getresponse()
            assert response.status == 201, response.read()
            response.read()
            connection.request("GET", "/api/blobstream/status", headers=headers)
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, {"blob_store_enabled": True})
        assert connection.sock is first_socket  # one connection all along
    finally:
        connection.close()


def _chunks(data: bytes, size: int = 100_000):
    for start in range(0, len(data), size):
        part = data[start : start + size]
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


def test_a_chunked_json_body_is_read(live_world, limited):
    """A body sent without Content-Length (chunked) is the request's body, not an empty one."""
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    body = json.dumps({"username": researcher.username, "password": PASSWORD}).encode()
    status, answer = _send(limited.port, _streamed("/api/token/user"), _chunks(body, 7))
    assert status == 200, answer
    assert set(answer) >= {"access_token", "refresh_token"}


def test_a_chunked_blob_upload_keeps_every_byte(live_world, limited, live_folder):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    data = bytes(range(256)) * (3 * MIB // 256)
    head = _streamed("/api/blobstream", f"Authorization: Bearer {token(researcher)}")
    status, answer = _send(
        limited.port, head.replace("application/json", "application/octet-stream"), _chunks(data)
    )
    assert status == 201, answer
    assert (live_folder / "blobs" / answer["uuid"]).read_bytes() == data
