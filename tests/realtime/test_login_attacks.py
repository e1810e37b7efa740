"""A socket handshake with a token of a login this server never started gets no identity."""

from __future__ import annotations

import uuid

import pytest

from accounts.tokens import login_tokens
from tests.realtime.helpers import PollingSession, token

pytestmark = pytest.mark.live


def _token_of_unknown_login(node) -> str:
    return login_tokens(
        node.pk, "node", [], generation=node.token_generation, session_id=uuid.uuid4().hex,
        refresh_jti=uuid.uuid4().hex, ends=None,
    )[0]  # fmt: skip


@pytest.mark.parametrize(("name", "make_token", "told"), [
    ("a login this server started", token, False),
    ("a login this server never started", _token_of_unknown_login, True),
])  # fmt: skip
def test_a_socket_of_an_unknown_login_is_told_its_token_is_invalid(
    server, live_world, name, make_token, told
):
    session = PollingSession([server.url], make_token(live_world.node_a))

    session.send("40/tasks,{}")

    packets = session.poll() + session.poll()
    assert packets[0].startswith('40/tasks,{"sid":'), name
    assert ('42/tasks,["invalid_token"]' in packets) is told, (name, packets)
