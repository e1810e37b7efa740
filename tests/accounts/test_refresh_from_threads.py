"""The official clients refresh from several threads, each with the refresh token it read: a node's refresh
thread, and every thread whose request got an error answer (``ClientBase.request`` refreshes then). A slow
one may present a token the login was refreshed past twice or more. Within the reuse leeway that must keep
the login; a token replaced longer ago is a stolen one and still ends it."""

from __future__ import annotations

import pytest

from accounts.models import LoginSession
from accounts.sessions import REUSE_LEEWAY
from tests.accounts.test_revocation import REVOKED, assert_revoked, assert_works, audited, refresh, user_login

pytestmark = pytest.mark.django_db


def test_a_token_replaced_twice_within_the_leeway_keeps_the_login(api, user):
    me = f"/api/user/{user.pk}"
    read_by_the_slow_thread = user_login(api)
    second = refresh(api, read_by_the_slow_thread["refresh_token"]).json()
    third = refresh(api, second["refresh_token"]).json()

    late = refresh(api, read_by_the_slow_thread["refresh_token"])

    assert late.status_code == 200, late.json()
    for kept in (late.json(), third):
        assert_works(api, kept, me)
    # Whichever pair the client keeps, the next refresh goes on.
    assert refresh(api, late.json()["refresh_token"]).status_code == 200
    assert not audited("token.reuse_revoked")


def test_a_token_replaced_longer_ago_than_the_leeway_ends_the_login(api, user):
    me = f"/api/user/{user.pk}"
    stolen = user_login(api)
    owner = refresh(api, stolen["refresh_token"]).json()
    owner = refresh(api, owner["refresh_token"]).json()
    session = LoginSession.objects.get(identity=user)
    leeway = REUSE_LEEWAY.total_seconds()
    aged = {jti: when - leeway - 1 for jti, when in session.replaced_jtis.items()}
    LoginSession.objects.filter(pk=session.pk).update(replaced_jtis=aged)

    replay = refresh(api, stolen["refresh_token"])

    assert (replay.status_code, replay.json()) == (401, REVOKED)
    assert_revoked(api, owner, me)
    assert refresh(api, owner["refresh_token"]).status_code == 401
    assert audited("token.reuse_revoked")
