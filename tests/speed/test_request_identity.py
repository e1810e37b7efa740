"""A request's token, read in the loop for its share of the request threads (``vantage6.handler.Shares``),
is verified once: its authentication takes that outcome, valid or not."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from django.conf import settings

from accounts import authentication
from accounts.tokens import ALGORITHM, container_token, login_tokens
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


def _scope(raw: str) -> dict:
    return {"headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {raw}".encode())]}


def _login_token(sub: int, client_type: str) -> str:
    access, _ = login_tokens(sub, client_type, [], generation=0, session_id="s", refresh_jti="j", ends=None)
    return access


def test_users_nodes_and_the_containers_of_each_node_are_identities_apart():
    """Users and nodes are numbered apart, and containers by their node (whatever their task): none of them
    shares another's request threads, and none is one with the requests that have no token."""
    user, node = _login_token(7, "user"), _login_token(7, "node")
    containers = [container_token({"task_id": task, "node_id": 7}) for task in (7, 8)]
    other_node = container_token({"task_id": 7, "node_id": 8})
    tokens = (user, node, *containers, other_node)
    identities = [authentication.request_identity(_scope(raw)) for raw in tokens]
    assert None not in identities
    assert len(set(identities)) == 4
    assert identities[2] == identities[3]  # the containers of one node: one


def test_a_token_not_sent_as_a_bearer_token_is_anonymous():
    raw = _login_token(7, "user")
    assert authentication.request_identity({"headers": [(b"authorization", f"Token {raw}".encode())]}) is None
    assert authentication.request_identity({"headers": [(b"authorization", raw.encode())]}) is None


def test_an_identitys_ended_requests_give_their_threads_back(world, application):  # noqa: F811
    """More requests one after another than an identity's share: each is answered (a thread it held is
    given back when its request ends, or the share runs out for good)."""
    from vantage6.asgi import django_http

    headers = auth(make_user(world.org_a, "Researcher"))
    for _ in range(django_http.shares.share + 1):
        status, _, body, _ = call(application, "/api/version", headers=headers)
        assert status == 200, body


@pytest.mark.parametrize("separator", [" ", "\t", "\xa0", "\x85", "\x1f"])
def test_a_header_that_authenticates_a_request_names_its_identity(world, application, separator):  # noqa: F811
    """A signed-in caller whose header reads as its token to the request's authentication has its requests
    counted as its own, never as anonymous ones: otherwise it took the anonymous share of the request
    threads as well as its own, all of them (no thread left for the other users' and nodes' requests)."""
    raw = auth(make_user(world.org_a, "Researcher"))["Authorization"].split()[1]
    header = f"Bearer{separator}{raw}".encode("latin-1")  # as a client sends it, and Django reads it
    status, _, body, _ = call(application, "/api/user", headers={"Authorization": header})
    identity = authentication.request_identity(_scope_of(header))
    assert (status == 200) == (identity is not None), (status, body)


def _scope_of(header: bytes) -> dict:
    return {"headers": [(b"host", b"127.0.0.1"), (b"authorization", header)]}
