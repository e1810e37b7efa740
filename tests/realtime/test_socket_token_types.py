"""Only an access token opens an authenticated socket: the refresh token of the same login connects
as anonymous, in no room."""

from __future__ import annotations

import pytest

from tests.realtime.helpers import TASKS, eventually, make_user, token_pair

pytestmark = pytest.mark.live


def test_a_refresh_token_opens_a_socket_in_no_room(server, live_world, sockets):
    access, refresh = token_pair(make_user(live_world.org_a, event_scope="COLLABORATION"))

    with_refresh = sockets(server.url, refresh)
    assert eventually(lambda: TASKS in with_refresh.client.namespaces)
    assert "message" not in [name for name, _ in with_refresh.received(1)]

    # The access token of the same login does join its rooms.
    sockets(server.url, access).wait_for("message", where=lambda text: "joined room" in text)
