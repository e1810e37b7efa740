"""Behind a TLS-terminating proxy the scheme comes from ``X-Forwarded-Proto``: a client that reaches
the server directly cannot claim HTTPS for its plain connection."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import Client

PROXY, CLIENT = "10.0.0.5", "203.0.113.7"


@pytest.fixture(autouse=True)
def _behind_tls(settings):  # what V6_BEHIND_TLS=1 sets (tests/api/test_settings.py)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000


def _seen_as_https(peer: str) -> bool:
    """Whether the server took the request as HTTPS (it sends HSTS only then)."""
    response = Client().get("/api/version", REMOTE_ADDR=peer, HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    return "Strict-Transport-Security" in response


@pytest.mark.parametrize(
    ("trusted", "peer", "https"),
    [
        (["10.0.0.0/8"], PROXY, True),
        (["10.0.0.0/8"], CLIENT, False),
        (["10.0.0.0/8"], f"::ffff:{PROXY}", True),
        (["10.0.0.0/8"], "not an address", False),
        ([], CLIENT, True),  # no proxy listed: the header is believed, as documented
    ],
)
def test_the_scheme_is_taken_from_a_trusted_proxy_only(settings, trusted, peer, https):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(network) for network in trusted]
    assert _seen_as_https(peer) is https
