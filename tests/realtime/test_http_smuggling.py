"""Request smuggling and parser-differential shapes against a real ``python -m vantage6.serve``.

Each request is followed on the same connection by a request for the version that closes the
connection: the statuses of every answer on the connection are compared with the expected ones, so
that a request hidden in another's body (``GET /smuggled``: a 404) or a framing read two ways shows
as an extra, missing or wrong answer. A strict refusal (400, 501, 505) ends the connection.
"""

from __future__ import annotations

import pytest

from tests.realtime.rawhttp import Reader, connect, escaped, log_size, still_serving

pytestmark = pytest.mark.live

AFTER = b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /api/version HTTP/1.1\r\nHost: x\r\n"  # answered 405, whatever its body
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
SERVED = [405, 200]  # the POST, then the version
REFUSED = [400]


def _get(target: bytes, *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET %s %s\r\nHost: x\r\n%s\r\n" % (target, version, b"".join(f + b"\r\n" for f in fields))


def _post(*fields: bytes, body: bytes = b"") -> bytes:
    return POST + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def _chunks(*lines: bytes) -> bytes:
    return CHUNKED + b"".join(lines)


UPGRADE = (
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
)

CASES: dict[str, tuple[bytes, list[int]]] = {
    # Served as they are.
    "content-length body then a pipelined request": (
        _post(b"Content-Length: 2", body=b"{}") + SMUGGLED,
        [405, 404, 200],
    ),
    "content-length with leading zeros": (_post(b"Content-Length: 002", body=b"{}"), SERVED),
    "chunk extensions": (_chunks(b'2;a=1;b="x y"\r\n{}\r\n0;c\r\n\r\n'), SERVED),
    "space before a chunk extension": (_chunks(b"2 ;a\r\n{}\r\n0\r\n\r\n"), SERVED),
    "chunk size with leading zeros and upper case": (_chunks(b"00A\r\n0123456789\r\n0\r\n\r\n"), SERVED),
    "trailer fields": (_chunks(b"2\r\n{}\r\n0\r\nX-A: 1\r\nContent-Length: 99\r\n\r\n"), SERVED),
    "chunked in any case": (_post(b"Transfer-Encoding: ChUnKeD", body=b"0\r\n\r\n"), SERVED),
    "empty lines before a request": (b"\r\n\r\n" + _get(b"/api/version"), [200, 200]),
    "HTTP/1.0 with keep-alive": (
        _get(b"/api/version", b"Connection: keep-alive", version=b"HTTP/1.0"),
        [200, 200],
    ),
    "HTTP/1.0 closes": (_get(b"/api/version", version=b"HTTP/1.0"), [200]),
    "connection close ends the pipeline": (_get(b"/api/version", b"Connection: close") + SMUGGLED, [200]),
    "expect 100-continue without a body": (_get(b"/api/version", b"Expect: 100-continue"), [200, 200]),
    "h2c upgrade is not taken": (
        _get(
            b"/api/version",
            b"Upgrade: h2c",
            b"Connection: Upgrade, HTTP2-Settings",
            b"HTTP2-Settings: AAMAAABkAAQAAP__",
        ),
        [200, 200],
    ),
    "a host that is no host name": (
        _get(b"/api/version", version=b"HTTP/1.1").replace(b"Host: x", b"Host: a b"),
        [400, 200],
    ),
    "obs-text in a value": (_get(b"/api/version", b"X-A: caf\xe9"), [200, 200]),
    "NUL escaped in the path": (_get(b"/api/%00"), [404, 200]),
    "overlong UTF-8 in the path": (_get(b"/api/%c0%af%c0%ae%c0%ae"), [404, 200]),
    "NUL escaped in the query": (_get(b"/api/version?a=%00"), [200, 200]),
    "authority-like path": (_get(b"//[::1"), [404, 200]),
    "authority-like path to a blob upload": (
        b"POST //[x/api/blobstream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        [404, 200],
    ),
    # Refused: framing that two parsers could read two ways, or no HTTP/1.1 at all.
    "obs-fold of transfer-encoding": (
        _post(b"Transfer-Encoding: identity", b" chunked", body=b"0\r\n\r\n" + SMUGGLED),
        REFUSED,
    ),
    "bare LF line ends": (b"POST /api/version HTTP/1.1\nHost: x\nContent-Length: 0\n\n" + SMUGGLED, REFUSED),
    "bare CR in a value": (_get(b"/api/version", b"X-A: 1\rContent-Length: 5"), REFUSED),
    "NUL in a name": (_get(b"/api/version", b"X-\x00A: 1"), REFUSED),
    "control character in a name": (_get(b"/api/version", b"X-\x01A: 1"), REFUSED),
    "empty name": (_get(b"/api/version", b": 1"), REFUSED),
    "space before the colon of transfer-encoding": (
        _post(b"Transfer-Encoding : chunked", b"Content-Length: 2", body=b"{}"),
        REFUSED,
    ),
    "vertical tab around chunked": (_post(b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), REFUSED),
    "two transfer-encodings": (
        _post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        REFUSED,
    ),
    "chunked, identity": (_post(b"Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"), [501]),
    "identity, chunked": (_post(b"Transfer-Encoding: identity, chunked", body=b"0\r\n\r\n"), [501]),
    "chunked twice in one field": (_post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), [501]),
    "xchunked": (_post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), [501]),
    "transfer-encoding in HTTP/1.0": (
        b"POST /api/version HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        REFUSED,
    ),
    "transfer-encoding and content-length": (
        _post(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
        REFUSED,
    ),
    "two equal content-lengths": (_post(b"Content-Length: 2", b"Content-Length: 2", body=b"{}"), REFUSED),
    "content-length list": (_post(b"Content-Length: 2, 2", body=b"{}"), REFUSED),
    "content-length with a sign": (_post(b"Content-Length: +2", body=b"{}"), REFUSED),
    "content-length in hex": (_post(b"Content-Length: 0x2", body=b"{}"), REFUSED),
    "content-length with inner space": (_post(b"Content-Length: 1 0", body=b"{}"), REFUSED),
    "content-length of 20 digits": (_post(b"Content-Length: 18446744073709551618", body=b"{}"), REFUSED),
    "content-length of 18 nines": (_post(b"Content-Length: 999999999999999999", body=b"{}"), [413]),
    "chunk size with a sign": (_chunks(b"+2\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "chunk size in 0x form": (_chunks(b"0x2\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "chunk size after a space": (_chunks(b" 2\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "chunk size of 16 digits": (_chunks(b"0000000000000002\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "chunk size overflowing 64 bits": (_chunks(b"10000000000000002\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "huge chunk size": (_chunks(b"fffffffffffffff\r\n{}\r\n"), [413]),
    "chunk size line ended by bare LF": (_chunks(b"2\n\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "last chunk ended by bare LF": (_chunks(b"0\n\r\n" + SMUGGLED), REFUSED),
    "bare LF in a chunk extension": (_chunks(b"2;a\nb\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "bare CR in a chunk extension": (_chunks(b"2;a\rb\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "NUL in a chunk extension": (_chunks(b"2;a=\x00\r\n{}\r\n0\r\n\r\n"), REFUSED),
    "chunk data longer than its size": (_chunks(b"2\r\n{}XX\r\n0\r\n\r\n"), REFUSED),
    "chunk data ended by bare LF": (_chunks(b"2\r\n{}\n0\r\n\r\n"), REFUSED),
    "bare LF in a trailer": (_chunks(b"0\r\nX-A: 1\n" + SMUGGLED[:-2] + b"\r\n\r\n"), REFUSED),
    "trailer without colon": (_chunks(b"0\r\ngarbage\r\n\r\n"), REFUSED),
    "NUL in a trailer": (_chunks(b"0\r\nX-A: \x00\r\n\r\n"), REFUSED),
    "obs-fold in a trailer": (_chunks(b"0\r\nX-A: 1\r\n folded\r\n\r\n"), REFUSED),
    "absolute-form target": (_get(b"http://x/api/version"), REFUSED),
    "authority-form target": (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", REFUSED),
    "asterisk-form target": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", REFUSED),
    "HTTP/0.9": (b"GET /api/version\r\n\r\n", REFUSED),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REFUSED),
    "HTTP/1.2": (_get(b"/api/version", version=b"HTTP/1.2"), [505]),
    "lower-case version": (_get(b"/api/version", version=b"http/1.1"), REFUSED),
    "double space in the request line": (b"GET  /api/version HTTP/1.1\r\nHost: x\r\n\r\n", REFUSED),
    "tab in the request line": (b"GET\t/api/version HTTP/1.1\r\nHost: x\r\n\r\n", REFUSED),
    "control character in the method": (b"G\x01T /api/version HTTP/1.1\r\nHost: x\r\n\r\n", REFUSED),
    "two hosts": (_get(b"/api/version", b"Host: y"), REFUSED),
    "websocket upgrade in HTTP/1.0": (
        _get(b"/socket.io/?EIO=4&transport=websocket", *UPGRADE, version=b"HTTP/1.0"),
        REFUSED,
    ),
    "websocket upgrade to an authority-like path": (_get(b"//[::1/socket.io/", *UPGRADE), [404]),
}


@pytest.mark.parametrize(("request_bytes", "statuses"), CASES.values(), ids=CASES.keys())
def test_each_request_is_answered_once_as_itself(server, request_bytes, statuses):
    since = log_size(server.log)
    with connect(server.port, timeout=2) as sock:
        sock.sendall(request_bytes + AFTER)
        answered, closed = Reader(sock).all()
    # A refused body is read to its end (and thrown away) before the connection closes.
    assert (answered, closed) == (statuses, statuses[-1] != 413)
    still_serving(server.port)
    assert not escaped(server.log, since), "\n".join(escaped(server.log, since))
