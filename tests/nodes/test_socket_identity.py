"""What the heartbeat round costs and finds when it checks the identity of connected sockets."""

from __future__ import annotations

import time

import pytest
from django.db.models import F

from accounts.models import Authenticatable
from accounts.permissions import principal_for_user
from accounts.sessions import end_login, start_login
from accounts.tokens import decode
from nodes.consumers import KEPT_CLAIMS, ended_sessions
from tests.factories import make_org, make_user
from vantage6.socketio.store import WEBSOCKET, Session


def _session(number: int, access_token: str, **changed: object) -> Session:
    claims = {key: value for key, value in decode(access_token).items() if key in KEPT_CLAIMS}
    return Session(str(number), WEBSOCKET, {"claims": {**claims, **changed}}, owner=f"user:{claims['sub']}")


@pytest.mark.django_db
def test_one_query_checks_every_socket_of_a_process(django_assert_num_queries):
    org = make_org()
    users = [make_user(org) for _ in range(5)]
    good, revoked, logged_out, expired, deleted = (start_login(user, "user")[0] for user in users)
    Authenticatable.objects.filter(pk=users[1].pk).update(token_generation=F("token_generation") + 1)
    end_login(principal_for_user(users[2]), decode(logged_out))
    users[4].delete()
    sessions = [
        _session(0, good),
        _session(1, revoked),
        _session(2, logged_out),
        _session(3, expired, exp=int(time.time()) - 1),
        _session(4, deleted),
    ]

    ended_sessions(sessions)  # as their handshakes did: each login is looked up once per process

    with django_assert_num_queries(1):
        ended = ended_sessions(sessions)

    assert ended == {"1": "invalid_token", "2": "invalid_token", "3": "expired_token", "4": "invalid_token"}
