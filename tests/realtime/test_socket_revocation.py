"""A connected socket is only as good as its login: ended, expired or deleted, it loses its identity.

The socket is told (``invalid_token``, or ``expired_token``), leaves its rooms and hears no more
events: at once when the server ends the login, else at the next heartbeat round.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests
from django.db.models import F

from accounts.login import PURPOSE_PASSWORD, issue_reset_token
from accounts.models import Authenticatable, User
from nodes.models import Node
from tests.factories import PASSWORD
from tests.realtime.helpers import (
    PollingSession,
    create_task,
    eventually,
    log_in,
    make_user,
    short_lived_token,
    token,
)
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live

NEW_PASSWORD = "Another1!pass"


def _call(method: str, url: str, bearer: str | None = None, **body: object) -> None:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    response = requests.request(method, url, json=body or None, headers=headers, timeout=30)
    assert response.status_code == 200, response.text


@dataclass
class Login:
    """A login whose socket is connected: ``own`` is its access token; ``admin`` manages ``identity``."""

    host: str
    identity: User | Node
    own: str
    admin: str


def password_change(login: Login) -> None:
    _call(
        "PATCH",
        f"{login.host}/api/password/change",
        login.own,
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
    )


def password_reset(login: Login) -> None:
    reset = issue_reset_token(User.objects.using(LIVE).get(pk=login.identity.pk), PURPOSE_PASSWORD)
    _call("POST", f"{login.host}/api/recover/reset", reset_token=reset, password=NEW_PASSWORD)


def log_out(login: Login) -> None:
    _call("POST", f"{login.host}/api/token/revoke", login.own)


def log_out_everywhere(login: Login) -> None:
    _call("POST", f"{login.host}/api/token/revoke", login.own, all=True)


def user_deleted(login: Login) -> None:
    _call("DELETE", f"{login.host}/api/user/{login.identity.pk}", login.admin)


def new_api_key(login: Login) -> None:
    _call("POST", f"{login.host}/api/recover/node", login.admin, id=login.identity.pk)


def node_deleted(login: Login) -> None:
    _call("DELETE", f"{login.host}/api/node/{login.identity.pk}", login.admin)


USER_ENDINGS = [password_change, password_reset, log_out, log_out_everywhere, user_deleted]
NODE_ENDINGS = [new_api_key, log_out, log_out_everywhere, node_deleted]


def assert_unidentified(identity) -> None:
    """Soon after the event: its socket no longer counts as a connection of the identity."""
    rows = Authenticatable.objects.using(LIVE).filter(pk=identity.pk, status="online")
    assert eventually(lambda: not rows.exists(), timeout=3)


def assert_hears_no_new_task(socket, host, world, witness) -> None:
    """A task created now reaches ``witness`` (node B's socket), not ``socket``."""
    researcher = make_user(world.org_b, roles=("Researcher",))
    task_id = create_task(host, researcher, world.collab_ab, [world.org_b])
    assert witness.wait_for("new_task") == {"id": task_id, "parent_id": None}
    assert "new_task" not in [name for name, _ in socket.received(1)]


@pytest.mark.parametrize("end", USER_ENDINGS, ids=lambda end: end.__name__)
def test_a_user_socket_is_told_and_loses_its_rooms_when_its_login_ends(
    unswept_server, live_world, sockets, end
):
    host = unswept_server.url
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    own = log_in(host, user)
    socket = sockets(host, own)
    socket.wait_joined()
    witness = sockets(host, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    admin = token(make_user(live_world.org_a, roles=("Root",)))

    end(Login(host, user, own, admin))

    socket.wait_for("invalid_token", timeout=5)  # long before the next heartbeat round
    assert_unidentified(user)
    assert_hears_no_new_task(socket, host, live_world, witness)


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
@pytest.mark.parametrize("end", NODE_ENDINGS, ids=lambda end: end.__name__)
def test_a_node_socket_is_told_and_loses_its_rooms_when_its_login_ends(
    unswept_server, live_world, sockets, end, transports
):
    host = unswept_server.url
    node = live_world.node_a
    own = log_in(host, node)
    socket = sockets(host, own, transports=transports)
    socket.wait_ready(node)
    witness = sockets(host, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    admin = token(make_user(live_world.org_a, roles=("Root",)))

    end(Login(host, node, own, admin))

    socket.wait_for("invalid_token", timeout=5)
    assert_unidentified(node)
    assert_hears_no_new_task(socket, host, live_world, witness)
    # Not waiting for the long-poll, which this server answers only after its minute-long ping interval.
    socket.client.eio.disconnect(abort=True)


def test_ending_one_login_leaves_the_other_logins_sockets_alone(unswept_server, live_world, sockets):
    host = unswept_server.url
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    ended, kept = log_in(host, user), log_in(host, user)
    ended_socket, kept_socket = sockets(host, ended), sockets(host, kept)
    ended_socket.wait_joined()
    kept_socket.wait_joined()

    log_out(Login(host, user, ended, ""))

    ended_socket.wait_for("invalid_token", timeout=5)
    assert_hears_no_new_task(ended_socket, host, live_world, kept_socket)


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
def test_the_heartbeat_round_finds_a_login_ended_behind_the_servers_back(
    server, live_world, sockets, transports
):
    node = live_world.node_a
    socket = sockets(server.url, token(node), transports=transports)
    socket.wait_ready(node)
    witness = sockets(server.url, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)

    _bump_generation(node)  # straight in the database: no server process hears of it

    socket.wait_for("invalid_token", timeout=8)  # the live servers' heartbeat round is 2 s
    assert_unidentified(node)
    assert_hears_no_new_task(socket, server.url, live_world, witness)


@pytest.mark.parametrize("transports", [None, ["polling"]], ids=["websocket", "polling"])
def test_a_socket_whose_token_expires_is_told_at_the_next_heartbeat_round(
    server, live_world, sockets, transports
):
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    socket = sockets(server.url, short_lived_token(user, 3), transports=transports)
    socket.wait_joined()
    witness = sockets(server.url, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)

    socket.wait_for("expired_token", timeout=10)

    assert_unidentified(user)
    assert_hears_no_new_task(socket, server.url, live_world, witness)


def _bump_generation(identity) -> None:
    Authenticatable.objects.using(LIVE).filter(pk=identity.pk).update(
        token_generation=F("token_generation") + 1
    )


@pytest.mark.parametrize("deleted", [False, True], ids=["revoked", "deleted"])
def test_the_token_of_an_ended_login_gets_no_identified_session(server, live_world, deleted):
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    stolen = token(user)
    if deleted:
        root = token(make_user(live_world.org_a, roles=("Root",)))
        _call("DELETE", f"{server.url}/api/user/{user.pk}", root)
    else:
        _bump_generation(user)

    session = PollingSession([server.url], stolen)
    session.send("40/tasks,{}")

    assert ["invalid_token"] in session.events(1)
    assert not Authenticatable.objects.using(LIVE).filter(pk=user.pk, status="online").exists()


def test_a_loop_of_handshakes_with_a_valid_token_keeps_at_most_twenty_sessions(server, live_world):
    node_token = token(live_world.node_c)
    handshakes = [PollingSession([server.url], node_token) for _ in range(25)]

    def alive(session: PollingSession) -> bool:
        params = {"EIO": "4", "transport": "polling", "sid": session.sid}
        return session.http.post(f"{server.url}/socket.io/", params=params, data="3", timeout=10).ok

    assert [alive(session) for session in handshakes] == [False] * 5 + [True] * 20
    newest = handshakes[-1]
    newest.send("40/tasks,{}")  # the newest connects as usual
    assert ["sync"] in newest.events(1)
