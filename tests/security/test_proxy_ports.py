"""A trusted proxy that names the client with its port (``203.0.113.7:51234``, ``[2001:db8::7]:51234``, as
some load balancers write X-Forwarded-For): the client is the address before the port. Read as no address,
every client behind the proxy was the proxy, and one client's failed logins locked every other one out."""

from __future__ import annotations

import ipaddress

import pytest

from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

LIMIT = 3
PROXY = "10.0.0.2"


def _login(api, username: str, password: str, forwarded: str):
    body = {"username": username, "password": password}
    return api.post("/api/token/user", body, format="json", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)


@pytest.mark.parametrize(
    ("attacker", "victim"),
    [("203.0.113.7:51234", "198.51.100.9:40000"), ("[2001:db8:1::7]:51234", "[2001:db8:2::9]:40000")],
)
def test_one_clients_failures_behind_a_proxy_naming_ports_lock_out_no_other(
    api, world, settings, attacker, victim
):
    settings.LOGIN_FAILURES_PER_MINUTE = LIMIT
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    make_user(world.org_a, username="victim")
    for _ in range(LIMIT):
        assert _login(api, "nobody", "x", attacker).status_code == 401
    assert _login(api, "victim", PASSWORD, attacker).status_code == 429  # the attacker is limited
    assert _login(api, "victim", PASSWORD, victim).status_code == 200  # the others are not
