"""Tokens that open no socket, against a live server: one whose header nests deeper than a JSON reader goes
(anyone can send one: a header is read before the signature is checked), an algorithm container's token of
a running task and a mailed reset token. The socket gets no identity, no exception escapes, and the server
goes on serving sockets. The deep token is answered on HTTP too, where the server reads it before the body
(the body limit of a blob upload depends on it)."""

from __future__ import annotations

import base64

import pytest
import requests

from accounts.login import PURPOSE_PASSWORD
from accounts.tokens import container_token, reset_token
from tests.realtime.helpers import make_run, token
from tests.realtime.rawhttp import escaped, log_size
from tests.realtime.test_node_socket import status_of
from tests.realtime.test_socket_token_types import _handshake

pytestmark = pytest.mark.live


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Unsigned: its header is read first.
DEEP = ".".join([_b64(b'{"alg":"HS256","x":' + b"[" * 2000 + b"]" * 2000 + b"}"), _b64(b"{}"), "x"])


def test_a_token_nested_too_deep_is_no_identity(server, live_world):
    since = log_size(server.log)

    answer = _handshake(server, DEEP)

    assert answer.startswith("40/tasks,"), answer  # connected, as any socket without a usable token
    assert not escaped(server.log, since)
    assert _handshake(server, token(live_world.node_a)).startswith("40/tasks,")


def test_a_blob_upload_with_a_token_nested_too_deep_is_answered(server):
    headers = {"Authorization": f"Bearer {DEEP}"}

    response = requests.post(f"{server.url}/api/blobstream", data=b"x" * 10, headers=headers, timeout=30)

    assert response.status_code == 422, response.text


def test_container_and_reset_tokens_are_no_identity(server, live_world, sockets):
    run = make_run(live_world)
    node = live_world.node_a
    container = container_token(
        {
            "client_type": "container", "node_id": node.pk, "node_generation": node.token_generation,
            "organization_id": node.organization_id, "collaboration_id": run.task.collaboration_id,
            "study_id": None, "store_id": None, "task_id": run.task_id, "image": run.task.image,
            "databases": [],
        }
    )  # fmt: skip
    reset = reset_token(node.pk, PURPOSE_PASSWORD, "any")

    for bearer in (container, reset):
        socket = sockets(server.url, bearer)
        assert socket.received(1.5) == []  # no sync, no token event
    assert status_of(node) == "offline"
