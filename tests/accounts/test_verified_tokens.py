"""Tokens verified once per process: what was accepted before never outlives its expiry, its
revocation or its signature."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings as django_settings

from accounts.authentication import VERIFIED_TOKENS_KEPT, _verified, verified_claims
from accounts.models import User
from accounts.sessions import start_login
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_an_accepted_token_is_refused_once_it_expires(api, user, settings):
    # The expiry is a whole second: of a 2 s lifetime, more than 1 s is left for the first request.
    settings.ACCESS_TOKEN_LIFETIME = timedelta(seconds=2)
    access, _ = start_login(User.objects.get(pk=user.pk), "user")
    me = f"/api/user/{user.pk}"
    assert api.get(me, **auth(access)).status_code == 200
    expiry = jwt.decode(access, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expiry - time.time()) + 0.05)

    response = api.get(me, **auth(access))

    assert response.status_code == 401
    assert response.json() == {"msg": "Token has expired"}


@pytest.mark.parametrize(
    "end",
    [
        lambda api, token: api.post("/api/token/revoke", {}, format="json", **auth(token)),
        lambda api, token: api.post("/api/token/revoke", {"all": True}, format="json", **auth(token)),
        lambda api, token: api.patch(
            "/api/password/change",
            {"current_password": PASSWORD, "new_password": "Another1!pass"},
            format="json",
            **auth(token),
        ),
    ],
    ids=["logout", "all logins", "password change"],
)
def test_an_accepted_token_is_refused_at_once_when_its_login_ends(api, user, end):
    access, _ = start_login(User.objects.get(pk=user.pk), "user")
    me = f"/api/user/{user.pk}"
    assert api.get(me, **auth(access)).status_code == 200
    assert access in _verified

    assert end(api, access).status_code == 200

    response = api.get(me, **auth(access))
    assert response.status_code == 401
    assert response.json() == {"msg": "Token has been revoked"}


def test_the_payload_of_an_accepted_token_signed_by_another_key_is_refused(api, user):
    access, _ = start_login(User.objects.get(pk=user.pk), "user")
    me = f"/api/user/{user.pk}"
    assert api.get(me, **auth(access)).status_code == 200
    claims = jwt.decode(access, options={"verify_signature": False})
    forged = jwt.encode(claims, "an attacker's key of thirty-two bytes!", algorithm="HS256")

    response = api.get(me, **auth(forged))

    assert response.status_code == 422
    assert response.json() == {"msg": "Signature verification failed"}
    assert forged not in _verified


def test_the_tokens_kept_are_bounded():
    _verified.clear()
    tokens = [
        jwt.encode(
            {"sub": 1, "type": "access", "iat": int(time.time()), "exp": int(time.time()) + 600, "n": n},
            django_settings.JWT_SECRET_KEY,
            algorithm="HS256",
        )
        for n in range(VERIFIED_TOKENS_KEPT + 1)
    ]
    for token in tokens:
        assert verified_claims(token)["sub"] == 1
    assert len(_verified) <= VERIFIED_TOKENS_KEPT
