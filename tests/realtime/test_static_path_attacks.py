"""Paths of the static files the server serves itself (admin, API docs) as a client writes them on the
wire, unnormalised: a way out of the static folders is a 400, never a file, a 500 or an error in the log."""

from __future__ import annotations

import pytest

from tests.realtime.rawhttp import Reader, connect, escaped, log_size

pytestmark = pytest.mark.live


@pytest.mark.parametrize(
    "target",
    [
        "/static/../vantage6/settings.py",
        "/static/%2e%2e/vantage6/settings.py",
        "/static/admin/../../../../../../etc/passwd",
        "/static/admin/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    ],
)
def test_a_path_out_of_the_static_folders_is_a_400(server, target):
    since = log_size(server.log)
    with connect(server.port) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        status, fields, body = Reader(sock).response()
    assert status == 400, body
    assert fields["content-type"] == "application/json"
    assert b"root:" not in body and b"SECRET" not in body
    assert fields["x-frame-options"] == "DENY"
    assert not escaped(server.log, since), "\n".join(escaped(server.log, since))
