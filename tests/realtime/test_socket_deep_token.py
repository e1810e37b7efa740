"""A socket handshake whose token's header nests deeper than a JSON reader goes (anyone can send one: a
header is read before the signature is checked): the socket gets no identity, no exception escapes,
and the server goes on serving sockets."""

from __future__ import annotations

import base64

import pytest

from tests.realtime.helpers import token
from tests.realtime.rawhttp import escaped, log_size
from tests.realtime.test_socket_token_types import _handshake

pytestmark = pytest.mark.live


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_nested_too_deep_is_no_identity(server, live_world):
    deep = b"[" * 2000 + b"]" * 2000
    bearer = ".".join([_b64(b'{"alg":"HS256","x":' + deep + b"}"), _b64(b"{}"), "x"])
    since = log_size(server.log)

    answer = _handshake(server, bearer)

    assert answer.startswith("40/tasks,"), answer  # connected, as any socket without a usable token
    assert not escaped(server.log, since)
    assert _handshake(server, token(live_world.node_a)).startswith("40/tasks,")
