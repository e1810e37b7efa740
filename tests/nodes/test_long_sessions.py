"""The official node's and client's refresh flows keep a session alive over many token lifetimes."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from accounts.models import LoginSession
from accounts.tokens import AccessToken
from tests.factories import PASSWORD, make_collab, make_node, make_org, make_user
from vantage6.client import Client
from vantage6.common.client import node_client
from vantage6.common.client.node_client import NodeClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

ACCESS_SECONDS = 3


@pytest.fixture
def short_tokens(settings):
    settings.ACCESS_TOKEN_LIFETIME = timedelta(seconds=ACCESS_SECONDS)
    settings.REFRESH_TOKEN_LIFETIME = timedelta(seconds=2 * ACCESS_SECONDS)


@pytest.fixture
def address(live_server) -> tuple[str, int]:
    host, port = live_server.url.rsplit(":", 1)
    return host, int(port)


@pytest.mark.usefixtures("short_tokens")
def test_a_node_refreshes_its_token_across_several_lifetimes(address, monkeypatch):
    # The node refreshes this long before its token expires (600 s in the node).
    monkeypatch.setattr(node_client, "NODE_CLIENT_REFRESH_BEFORE_EXPIRES_SECONDS", 1.5)
    org = make_org("N")
    node, api_key = make_node(org, make_collab(org), "the-node")
    client = NodeClient(*address, "/api")
    client.log.setLevel("CRITICAL")
    client.authenticate(api_key)
    # The node's own refresh thread, stopped at the end by a token that has expired.
    worker = threading.Thread(target=client._NodeClient__refresh_token_worker, daemon=True)
    worker.start()

    seen = {client.token}
    ends = time.monotonic() + 3.5 * ACCESS_SECONDS
    while time.monotonic() < ends:
        answer = client.request(f"node/{node.pk}", retry=False)
        assert answer.get("id") == node.pk, answer
        seen.add(client.token)
        time.sleep(0.25)

    expired = AccessToken(node.pk, "node")
    expired.payload["exp"] = int(time.time()) - 60
    client._access_token = str(expired)
    worker.join(timeout=2 * ACCESS_SECONDS)
    assert not worker.is_alive()
    assert len(seen) >= 4  # the first token and at least three refreshed ones
    session = LoginSession.objects.get(identity_id=node.pk)
    assert session.revoked_at is None


@pytest.mark.usefixtures("short_tokens")
def test_the_official_client_refreshes_when_its_token_expired(address):
    org = make_org("U")
    make_collab(org, name="c")
    user = make_user(org, "Researcher", username="long-session")
    client = Client(*address, "/api", log_level="critical")
    client.authenticate(user.username, PASSWORD)
    tokens = {client.token}
    for _ in range(3):
        time.sleep(ACCESS_SECONDS + 1)
        # The request meets an expired token, the client refreshes and tries again.
        assert client.organization.get(org.pk)["name"] == "U"
        tokens.add(client.token)
    assert len(tokens) == 4
    assert LoginSession.objects.get(identity_id=user.pk).revoked_at is None
