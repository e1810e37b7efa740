"""A token whose header or claims nest deeper than a JSON reader goes: anyone can send one (the header is
read before the signature is checked), and it is a 422 like any other unreadable token, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from django.conf import settings

from tests.factories import make_user
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db

DEEP = b"[" * 5000 + b"]" * 5000


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: bytes, payload: bytes) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = hmac.new(settings.JWT_SECRET_KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


HEADER = b'{"alg":"HS256","typ":"JWT"}'
DEEP_HEADER = b'{"alg":"HS256","x":' + DEEP + b"}"
TOKENS = {
    "a deep header, unsigned": lambda: ".".join([_b64(DEEP_HEADER), _b64(b"{}"), "x"]),
    "deep claims, signed": lambda: _signed(HEADER, b'{"sub":1,"x":' + DEEP + b"}"),
}


@pytest.mark.parametrize("made", TOKENS)
@pytest.mark.parametrize("path", ["/api/user", "/api/token/refresh"])
def test_a_token_nested_too_deep_is_a_422(api, world, made, path):
    make_user(world.org_a, "Root", username="root-a")
    before = _state()

    method = api.post if path.endswith("refresh") else api.get
    response = method(path, HTTP_AUTHORIZATION=f"Bearer {TOKENS[made]()}")

    assert response.status_code == 422, response.content
    assert set(response.json()) == {"msg"}
    assert _state() == before
