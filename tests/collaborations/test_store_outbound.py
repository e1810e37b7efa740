"""Calls to algorithm stores cannot be turned against this server's own network.

A collaboration administrator chooses a store's URL and the server calls it: loopback, private,
link-local, multicast and reserved addresses are refused, redirects are not followed, and nothing but
a store's own ``msg`` comes back in an error.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accounts.models import AuditEntry
from accounts.permissions import Principal
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


def test_the_connection_goes_to_the_address_that_was_checked(api, world, settings, monkeypatch):
    """One lookup per call: a second one (by the HTTP library) could answer another address."""
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    lookups = []
    monkeypatch.setattr(store_client, "resolve", lambda host, _port: lookups.append(host) or ["127.0.0.1"])
    with FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        port = store.server.server_port
        response = register(api, f"http://rebind.example:{port}/api", headers=headers_of(world.org_a, "Root"))
    assert response.status_code == 201, response.json()
    assert lookups == ["rebind.example"]
    assert store.requests[0]["headers"]["host"] == f"rebind.example:{port}"


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for the DNS name ``name``: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


@pytest.mark.parametrize(("certified", "expected"), [("tls.example", 201), ("other.example", 404)])
def test_https_store_certificate_is_checked_against_its_host_name(
    api, world, settings, monkeypatch, tmp_path, certified, expected
):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    cert_file, key_file = _certificate(tmp_path, certified)
    monkeypatch.setattr(store_client, "resolve", lambda _host, _port: ["127.0.0.1"])
    # This test's certificate is the only one trusted (OpenSSL reads SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", cert_file)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_file, key_file)
    store = FakeStore()
    store.server.socket = server_side.wrap_socket(store.server.socket, server_side=True)
    store.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
    with store:
        url = f"https://tls.example:{store.server.server_port}/api"
        response = register(api, url, headers=headers_of(world.org_a, "Root"))
    assert response.status_code == expected, response.json()
    assert len(store.requests) == (1 if expected == 201 else 0)


def assert_given_up_within(seconds: float, api, world, url: str, *, last_tried: str = "") -> None:
    """Registering a store at ``url``, which does not answer in time, ends within ``seconds`` in a 404
    that names the URL tried last (``url`` unless told), and registers nothing."""
    started = time.monotonic()
    response = register(api, url, headers=headers_of(world.org_a, "Root"))
    assert time.monotonic() - started < seconds
    assert response.status_code == 404, response.json()
    assert response.json()["msg"].startswith(f"Algorithm store cannot be reached at {last_tried or url}")
    assert nothing_registered()


@pytest.fixture
def dripping_store():
    """The URL of a store on ``127.0.0.1`` that answers a byte every 0.2 s (29 s in all)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            for byte in b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n" + b" " * 100:
                if stop.wait(0.2):
                    return
                try:
                    peer.sendall(bytes([byte]))
                except OSError:
                    return  # cut by the server

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    stop.set()
    dripper.join(5)
    listener.close()


@pytest.fixture
def silent_dns(monkeypatch):
    """``silent-dns.example`` is looked up by a DNS server that does not answer (until the test ends)."""
    real, answer = socket.getaddrinfo, threading.Event()

    def hanging(host, *args, **kwargs):
        if host == "silent-dns.example":
            answer.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    yield "http://silent-dns.example/api"
    answer.set()


@pytest.fixture
def silent_localhost():
    """The URL of a store on ``localhost`` that accepts connections, on every loopback address of this
    machine, and answers nothing."""
    listener = socket.create_server(("0.0.0.0", 0))
    yield f"http://localhost:{listener.getsockname()[1]}/api"
    listener.close()


def test_a_store_that_answers_a_byte_at_a_time_is_cut_at_the_timeout(api, world, settings, dripping_store):
    """The timeout bounds the whole call, not each read: a store chosen by a collaboration admin must
    not hold a request's thread (of a bounded pool) for as long as it drips its answer."""
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 1
    assert_given_up_within(5, api, world, dripping_store)


def test_a_store_whose_name_lookup_hangs_is_given_up_at_the_timeout(api, world, settings, silent_dns):
    """The system resolver has timeouts of its own (per server and attempt, minutes in all): the store
    call's deadline bounds the lookup too, or a store's DNS server that never answers would hold a
    request's thread as long as the resolver waits."""
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 1
    assert_given_up_within(5, api, world, silent_dns)


def test_lookups_that_hang_keep_no_other_store_waiting(api, world, settings, silent_dns):
    """Calls given up on a silent DNS server leave their lookups waiting for the resolver: the lookup of
    another store's name does not wait behind them."""
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 1
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    headers = headers_of(world.org_a, "Root")
    for _ in range(store_client.MAX_CALLS):
        assert register(api, silent_dns, headers=headers).status_code == 404
    with FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (201, {"id": 1})
        response = register(api, f"http://localhost:{store.server.server_port}/api", headers=headers)
    assert response.status_code == 201, response.json()


def test_the_second_try_on_the_development_host_is_within_the_same_timeout(
    api, world, settings, silent_localhost
):
    """A store on ``localhost`` is tried again at ``DEV_HOST_URI``: both tries together end within the
    timeout, as any call does."""
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 2
    settings.DEV_HOST_URI = "127.0.0.2"
    dev_host = silent_localhost.replace("localhost", "127.0.0.2")
    assert_given_up_within(3.5, api, world, silent_localhost, last_tried=dev_host)  # one timeout, not two


def test_an_image_lookup_while_the_store_calls_are_all_taken_is_a_503_not_a_task_error():
    """Task creation asks the store for its image's digest: too many calls under way is the server's 503
    (try again), not a 400 blaming the task."""
    taken = [store_client._calls.acquire(blocking=False) for _ in range(store_client.MAX_CALLS)]
    try:
        with pytest.raises(store_client.StoresBusy) as raised:
            store_client.algorithm_digest(
                store_url="https://store.example.org/api",
                image="i",
                server_url="https://s",
                authorization=None,
                caller=Principal(kind="user", organization_id=1, rules=frozenset()),
            )
    finally:
        for _ in filter(None, taken):
            store_client._calls.release()
    assert raised.value.status_code == 503
