"""A request's token, read in the loop for its share of the request threads (``vantage6.handler.Shares``),
is verified once: its authentication takes that outcome, valid or not."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from django.conf import settings

from accounts import authentication
from accounts.tokens import ALGORITHM
from tests.factories import make_user
from tests.speed.test_handler import application, auth, call  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """The tokens verified from now on."""
    verified: list[str] = []
    decode = authentication.decode

    def counting(raw: str) -> dict:
        verified.append(raw)
        return decode(raw)

    monkeypatch.setattr(authentication, "decode", counting)
    monkeypatch.setattr(authentication, "_verified", {})
    return verified


def test_a_valid_token_is_verified_once(world, application, decoded):  # noqa: F811
    headers = auth(make_user(world.org_a, "Researcher"))
    status, _, body, _ = call(application, "/api/user", headers=headers)
    assert status == 200, body
    assert len(decoded) == 1


@pytest.mark.parametrize("forged", ["signature", "expired"])
def test_a_refused_token_is_verified_once(world, application, decoded, forged):  # noqa: F811
    user = make_user(world.org_a, "Researcher")
    headers = auth(user)
    if forged == "signature":
        headers["Authorization"] = headers["Authorization"][:-4] + "AAAA"
        expected = 422
    else:
        now = int(time.time())
        claims = {"type": "access", "sub": user.id, "client_type": "user", "iat": now - 60, "exp": now - 1}
        headers["Authorization"] = "Bearer " + jwt.encode(
            claims, settings.JWT_SECRET_KEY, algorithm=ALGORITHM
        )
        expected = 401
    status, _, body, _ = call(application, "/api/user", headers=headers)
    assert status == expected, body
    assert "msg" in json.loads(body)
    assert len(decoded) == 1
