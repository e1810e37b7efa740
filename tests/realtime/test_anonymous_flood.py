"""A flood of unauthenticated long-polling handshakes from one client address ends that address's own
oldest sessions only: the handshake of another client (a node before it authenticates) is kept. The
address is the peer's, or the one a trusted proxy names; a client that is no trusted proxy cannot pass
for others by naming them in ``X-Forwarded-For``."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.realtime.live import Daphne

pytestmark = pytest.mark.live

PER_ADDRESS = 100  # README: unauthenticated long-polling sessions of one client address
CAPACITY = 1000  # of all addresses together, in one server process
HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


def _client(server: Daphne, address: str) -> http.client.HTTPConnection:
    """A kept-alive connection to ``server`` from the loopback ``address`` (all of 127/8 is local)."""
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=20, source_address=(address, 0))


def _handshake(client: http.client.HTTPConnection, headers: dict[str, str] | None = None) -> str:
    client.request("GET", HANDSHAKE, headers=headers or {})
    response = client.getresponse()
    body = response.read().decode()
    assert response.status == 200, body
    return json.loads(body[1:])["sid"]


def _alive(client: http.client.HTTPConnection, sid: str) -> bool:
    """Whether ``sid`` is still known: a NOOP posted to it is taken, or the session is unknown."""
    client.request("POST", f"{HANDSHAKE}&sid={sid}", body=b"6", headers={"Content-Type": "text/plain"})
    response = client.getresponse()
    body = response.read()
    assert response.status in (200, 400), body
    return response.status == 200


@pytest.fixture
def patient_server(live_db, live_folder, request):
    """A server whose unauthenticated sessions outlive the flood (pingInterval + pingTimeout), with the
    variables a test passes as the fixture's parameter."""
    variables = getattr(request, "param", {})
    daphne = Daphne(
        live_db.process_env(V6_SOCKET_PING_INTERVAL="25", V6_SOCKET_PING_TIMEOUT="60", **variables),
        live_folder,
    )
    yield daphne
    daphne.stop()
    daphne.show_log()


def test_a_flood_of_anonymous_handshakes_from_one_address_ends_only_its_own(patient_server):
    victim, flooder = _client(patient_server, "127.0.0.2"), _client(patient_server, "127.0.0.3")
    waiting = _handshake(victim)  # as a node's handshake before it authenticates
    # Naming other addresses gets a client that is no trusted proxy nothing.
    flood = [
        _handshake(flooder, {"X-Forwarded-For": f"10.0.{n // 250}.{n % 250}"}) for n in range(CAPACITY + 10)
    ]

    assert _alive(victim, waiting)
    assert _alive(flooder, flood[-1])
    assert not _alive(flooder, flood[-PER_ADDRESS - 1])  # its own oldest ended
    assert _alive(flooder, flood[-PER_ADDRESS])


@pytest.mark.parametrize("patient_server", [{"V6_SOCKET_ANONYMOUS_PER_ADDRESS": "3"}], indirect=True)
def test_the_bound_of_one_address_is_its_setting(patient_server):
    client = _client(patient_server, "127.0.0.4")
    sids = [_handshake(client) for _ in range(4)]

    assert [_alive(client, sid) for sid in sids] == [False, True, True, True]
