"""Calls to algorithm stores cannot be turned against this server's own network.

A collaboration administrator chooses a store's URL and the server calls it: loopback, private,
link-local, multicast and reserved addresses are refused, redirects are not followed, and nothing but
a store's own ``msg`` comes back in an error.
"""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry
from collaborations import store_client
from collaborations.models import AlgorithmStore
from tests.collaborations.helpers import FakeStore, headers_of

pytestmark = pytest.mark.django_db

SERVER_URL = "https://v6.example.org/api"
# Names looked up through the stub below; every other host is resolved by the system.
DNS = {
    "store.internal.example": ["10.1.2.3"],
    "metadata.example": ["169.254.169.254"],
    "six.internal.example": ["fd00::5"],
    "mixed.example": ["93.184.216.34", "127.0.0.1"],
}


@pytest.fixture(autouse=True)
def resolver(monkeypatch):
    real = store_client.resolve if hasattr(store_client, "resolve") else None

    def stub(host: str, port: int) -> list[str]:
        return DNS[host] if host in DNS else real(host, port)

    monkeypatch.setattr(store_client, "resolve", stub, raising=False)


def register(api, url: str, *, headers: dict, **extra):
    body = {"name": "store", "algorithm_store_url": url, "server_url": SERVER_URL, "force": True, **extra}
    return api.post("/api/algorithmstore", body, format="json", **headers)


def nothing_registered() -> bool:
    return (
        not AlgorithmStore.objects.exists()
        and not AuditEntry.objects.filter(action="algorithmstore.create").exists()
    )


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1",
        "240.0.0.1", "255.255.255.255", "[fe80::1]", "[fc00::1]", "[ff02::1]", "[::]",
        "[2002:a9fe:a9fe::1]", "[64:ff9b::a9fe:a9fe]", "[::ffff:169.254.169.254]",
        "store.internal.example", "metadata.example", "six.internal.example", "mixed.example",
    ],
)  # fmt: skip
def test_stores_on_non_public_addresses_are_refused(api, world, settings, host):
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 1
    response = register(api, f"http://{host}/api", headers=headers_of(world.org_a, "Root"))
    assert response.status_code == 400, response.json()
    assert "non-public address" in response.json()["msg"]
    assert nothing_registered()


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass_the_check(address):
    assert store_client.is_public_address(address)


# Loopback addresses that reach a store listening on all interfaces of this machine.
LOOPBACK = ["127.0.0.1", "127.0.0.2", "0.0.0.0", "[::ffff:127.0.0.1]"]


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_stores_are_called_only_when_allowed(api, world, settings, host, allow):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = allow
    with FakeStore(host="0.0.0.0") as store:
        store.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        url = f"http://{host}:{store.server.server_port}/api"
        response = register(api, url, headers=headers_of(world.org_a, "Root"))
    if allow:
        assert response.status_code == 201, response.json()
        assert [r["path"] for r in store.requests] == ["/vantage6-server"]
    else:
        assert response.status_code == 400
        assert store.requests == []
        assert nothing_registered()


def test_redirects_are_not_followed(api, world, settings):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True  # both ends are on this machine
    headers = headers_of(world.org_a, "Collaboration Admin")
    with FakeStore(host="127.0.0.2") as elsewhere, FakeStore() as store:
        elsewhere.routes[("GET", "/vantage6-server")] = (201, {"id": 1})
        elsewhere.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        for status in (301, 302, 303, 307, 308):
            location = {"Location": f"{elsewhere.url}/vantage6-server"}
            store.routes[("POST", "/vantage6-server")] = (status, {"msg": "moved"}, location)
            response = register(api, store.url, headers=headers, collaboration_id=world.collab_ab.pk)
            assert response.status_code == 502, response.json()
            assert response.json() == {"msg": "Algorithm store error: moved"}
    assert elsewhere.requests == []
    assert nothing_registered()


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"<html>internal admin page SECRET</html>"), (404, b"SECRET"), (400, {"detail": "SECRET"}),
     (200, ["SECRET"]), (403, {"msg": {"nested": "SECRET"}})],
)  # fmt: skip
def test_errors_never_show_a_foreign_body(api, world, settings, status, body):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    with FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (status, body)
        response = register(api, store.url, headers=headers_of(world.org_a, "Root"))
    assert response.status_code in (400, 403, 404, 502)
    assert "SECRET" not in response.content.decode()
    assert response.json()["msg"] == f"Algorithm store error: the store answered with status {status}"
    assert nothing_registered()
