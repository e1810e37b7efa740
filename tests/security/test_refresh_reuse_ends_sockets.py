"""A refresh token presented again after its login moved on is the sign of a thief: the server ends the
whole login. Its sockets (the thief's among them, opened with the login's stolen access token) lose
their identity and rooms at once, as when the login is ended by logging out, not a heartbeat round
later."""

from __future__ import annotations

import pytest
import requests

from accounts.models import LoginSession
from accounts.sessions import REUSE_LEEWAY
from tests.factories import PASSWORD
from tests.realtime.conftest import (  # noqa: F401 - fixtures
    live_data,
    live_db,
    live_folder,
    live_world,
    sockets,
    unswept_server,
)
from tests.realtime.helpers import make_user, token
from tests.realtime.live import LIVE
from tests.realtime.test_socket_revocation import assert_hears_no_new_task, assert_unidentified

pytestmark = pytest.mark.live


def _refreshed(host: str, refresh_token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {refresh_token}"}
    return requests.post(f"{host}/api/token/refresh", headers=headers, timeout=30)


def test_a_reused_refresh_token_ends_the_logins_sockets_at_once(unswept_server, live_world, sockets):  # noqa: F811
    host = unswept_server.url
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    login = requests.post(
        f"{host}/api/token/user", json={"username": user.username, "password": PASSWORD}, timeout=30
    ).json()
    stolen_access, first_refresh = login["access_token"], login["refresh_token"]
    socket = sockets(host, stolen_access)
    socket.wait_joined()
    witness = sockets(host, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    # The owner refreshes twice, longer ago than the reuse leeway: the first refresh token is neither
    # current nor just replaced.
    second = _refreshed(host, first_refresh)
    assert second.status_code == 200, second.text
    assert _refreshed(host, second.json()["refresh_token"]).status_code == 200
    sessions = LoginSession.objects.using(LIVE).filter(identity=user)
    leeway = REUSE_LEEWAY.total_seconds()
    aged = {jti: when - leeway - 1 for jti, when in sessions.get().replaced_jtis.items()}
    sessions.update(replaced_jtis=aged)

    reused = _refreshed(host, first_refresh)

    assert reused.status_code == 401, reused.text
    user_path = f"{host}/api/user/{user.pk}"
    refused = requests.get(user_path, headers={"Authorization": f"Bearer {stolen_access}"}, timeout=30)
    assert refused.status_code == 401
    socket.wait_for("invalid_token", timeout=5)  # long before the next heartbeat round (a minute)
    assert_unidentified(user)
    assert_hears_no_new_task(socket, host, live_world, witness)
