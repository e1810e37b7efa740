"""What an anonymous client can do to the logins: guess at full speed from one address, fill the
audit trail with guesses, and read back a password typed into the username field."""

# ruff: noqa: ARG001 - fixtures that only set the scene, and attempts that share one signature

from __future__ import annotations

import ipaddress
import json
import logging

import pytest
from django.test import Client
from django.utils import timezone

from accounts.login import FAILED_LOGINS, name_digest
from accounts.models import AuditAction, AuditEntry, ClientLimit, User
from tests.admin.browser import Browser
from tests.factories import PASSWORD, bearer, make_org, make_user
from vantage6.throttle import FailureLimiter, client_address

pytestmark = pytest.mark.django_db

SECRET = "Tr0ub4dor&3-typed-as-a-name"
WRONG_KEY = "00000000-0000-4000-8000-000000000000"
ATTACKER, OTHER = "203.0.113.7", "198.51.100.20"


def _user_login(api, username: str, password: str, address: str = ATTACKER, **headers: str):
    body = {"username": username, "password": password}
    return api.post("/api/token/user", body, format="json", REMOTE_ADDR=address, **headers)


def _trail() -> list[tuple]:
    return list(AuditEntry.objects.order_by("id").values_list("action", "object_id", "data"))


# --- a password typed as the username --------------------------------------------------------------
def test_a_password_typed_as_the_username_is_kept_nowhere(api, world, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    assert _user_login(api, SECRET, "whatever").status_code == 401
    # The same mistake on the admin's login form (from the test client's own address).
    page = Client().post("/admin/login/?next=/admin/", {"username": SECRET, "password": "x"})
    assert page.status_code == 200  # the form again, with its error

    failed = AuditEntry.objects.filter(action=AuditAction.USER_LOGIN_FAILED).order_by("id")
    assert [entry.data for entry in failed] == [
        {"reason": "unknown user", "name_digest": name_digest(SECRET), "address": address}
        for address in (ATTACKER, "127.0.0.1")
    ]
    assert SECRET not in json.dumps(_trail())
    # Nor in what an administrator reads: the API, the admin's audit pages, the log.
    root = make_user(make_org("root-org"), "Root", username="auditor")
    listed = api.get("/api/audit?per_page=1000", **bearer(root))
    assert listed.status_code == 200 and SECRET not in listed.content.decode()
    auditor = Browser("auditor")
    for path in [
        "/admin/accounts/auditentry/",
        *(f"/admin/accounts/auditentry/{e.pk}/change/" for e in failed),
    ]:
        response = auditor.get(path)
        assert response.status_code == 200 and SECRET not in response.content.decode(), path
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err


def test_the_digest_stands_for_one_name(api, world):
    for name, address in [(SECRET, ATTACKER), (SECRET, OTHER), ("someone-else", "192.0.2.1")]:
        assert _user_login(api, name, "x", address).status_code == 401
    digests = [data["name_digest"] for _, _, data in _trail()]
    assert digests[0] == digests[1] != digests[2]
    assert all(len(digest) == 16 for digest in digests)


# --- failed logins per client address --------------------------------------------------------------
LIMIT = 3


@pytest.fixture
def limited(settings):
    settings.LOGIN_FAILURES_PER_MINUTE = LIMIT
    return settings


def _user(api, world, right: bool, address: str):
    user = User.objects.get(username="victim")
    return _user_login(api, user.username, PASSWORD if right else "wrong", address)


def _node(api, world, right: bool, address: str):
    key = world.keys[world.node_a.pk] if right else WRONG_KEY
    return api.post("/api/token/node", {"api_key": key}, format="json", REMOTE_ADDR=address)


def _two_factor_lost(api, world, right: bool, address: str):
    body = {"username": "victim", "password": PASSWORD if right else "wrong"}
    return api.post("/api/recover/2fa/lost", body, format="json", REMOTE_ADDR=address)


@pytest.mark.parametrize(
    ("attempt", "failed_action", "success_action"),
    [
        (_user, AuditAction.USER_LOGIN_FAILED, AuditAction.USER_LOGIN),
        (_node, AuditAction.NODE_LOGIN_FAILED, AuditAction.NODE_LOGIN),
        (_two_factor_lost, AuditAction.USER_LOGIN_FAILED, None),
    ],
    ids=["user login", "node login", "two-factor recovery"],
)
def test_an_address_that_failed_too_often_waits(
    api, world, limited, smtp, monkeypatch, attempt, failed_action, success_action
):
    make_user(world.org_a, username="victim")
    for _ in range(LIMIT):  # below the lock-out of the account
        assert attempt(api, world, False, ATTACKER).status_code == 401
    before = (_trail(), list(User.objects.values_list("pk", "failed_login_attempts", "last_login_attempt")))

    for right in (False, True, True):
        refused = attempt(api, world, right, ATTACKER)
        assert refused.status_code == 429
        assert 1 <= int(refused["Retry-After"]) <= 60
        wait = refused["Retry-After"]
        assert refused.json() == {
            "msg": f"Too many failed logins from your address; try again in {wait} second(s)"
        }
    # Nothing was checked or changed; one entry says that the address was refused.
    trail = _trail()
    assert trail[: len(before[0])] == before[0]
    assert trail[len(before[0]) :] == [
        (failed_action.value, None, {"reason": "too many failed logins", "address": ATTACKER})
    ]
    assert list(User.objects.values_list("pk", "failed_login_attempts", "last_login_attempt")) == before[1]
    # Other addresses go on; the refused one again after a minute.
    assert attempt(api, world, True, OTHER).status_code == 200
    monkeypatch.setattr(FAILED_LOGINS, "clock", lambda real=FAILED_LOGINS.clock: real() + 61)
    assert attempt(api, world, True, ATTACKER).status_code == 200
    if success_action:
        assert AuditEntry.objects.filter(action=success_action).count() == 2


def test_successes_do_not_count(api, world, limited):
    make_user(world.org_a, username="victim")
    for _ in range(2 * LIMIT):
        assert _user(api, world, True, ATTACKER).status_code == 200
        assert _node(api, world, True, ATTACKER).status_code == 200
    assert _user(api, world, False, ATTACKER).status_code == 401


def test_the_admin_login_is_limited_too(world, limited):
    make_user(world.org_a, "Organization Admin", username="victim")
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(LIMIT):
        assert client.post("/admin/login/", {"username": "victim", "password": "wrong"}).status_code == 200
    before = _trail()
    right = client.post("/admin/login/?next=/admin/", {"username": "victim", "password": PASSWORD})
    assert right.status_code == 200  # the form again: not logged in
    assert "_auth_user_id" not in client.session
    assert [row[0] for row in _trail()[len(before) :]] == [AuditAction.USER_LOGIN_FAILED.value]
    assert Browser("victim")  # from another address it logs in


def test_a_forwarded_address_counts_only_behind_a_trusted_proxy(api, world, limited):
    make_user(world.org_a, username="victim")
    # No trusted proxy: a made-up X-Forwarded-For does not make another client.
    for n in range(LIMIT):
        guess = _user_login(api, "nobody", "x", ATTACKER, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        assert guess.status_code == 401
    assert _user_login(api, "victim", PASSWORD, ATTACKER, HTTP_X_FORWARDED_FOR=OTHER).status_code == 429

    limited.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    ClientLimit.objects.all().delete()  # the addresses start afresh
    for _ in range(LIMIT):
        # What the client wrote comes first; the proxy appends the address it saw.
        spoofed = f"192.0.2.1, {ATTACKER}"
        assert _user_login(api, "nobody", "x", "10.0.0.2", HTTP_X_FORWARDED_FOR=spoofed).status_code == 401
    assert _user_login(api, "victim", PASSWORD, "10.0.0.3", HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 429
    assert _user_login(api, "victim", PASSWORD, "10.0.0.3", HTTP_X_FORWARDED_FOR=OTHER).status_code == 200


def test_guesses_of_unknown_names_and_keys_are_recorded_once_per_address_and_minute(api, world, settings):
    settings.LOGIN_FAILURES_PER_MINUTE = 0  # even without the limit
    for n in range(25):
        for address in (ATTACKER, OTHER):
            assert _user_login(api, f"guess-{n}", "x", address).status_code == 401
            node = api.post("/api/token/node", {"api_key": WRONG_KEY}, format="json", REMOTE_ADDR=address)
            assert node.status_code == 401
    assert sorted((action, data["address"]) for action, _, data in _trail()) == [
        ("node.login_failed", OTHER), ("node.login_failed", ATTACKER),
        ("user.login_failed", OTHER), ("user.login_failed", ATTACKER),
    ]  # fmt: skip


def test_guesses_at_a_blocked_account_are_recorded_once_per_address_and_minute(api, world, settings):
    settings.LOGIN_FAILURES_PER_MINUTE = 0
    user = make_user(world.org_a, username="victim")
    User.objects.filter(pk=user.pk).update(failed_login_attempts=settings.PASSWORD_MAX_FAILED_ATTEMPTS)
    User.objects.filter(pk=user.pk).update(last_login_attempt=timezone.now())
    for _ in range(25):
        for address in (ATTACKER, OTHER):
            assert _user_login(api, "victim", PASSWORD, address).status_code == 401
    rows = [(action, object_id, data["reason"], data["address"]) for action, object_id, data in _trail()]
    assert sorted(rows) == [
        ("user.login_failed", user.pk, "locked", OTHER), ("user.login_failed", user.pk, "locked", ATTACKER),
    ]  # fmt: skip


# --- the parts ------------------------------------------------------------------------------------------
PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "192.0.2.1", "203.0.113.7"),  # not a proxy: its header is the client's word
        ("10.0.0.1", "192.0.2.1", "192.0.2.1"),
        ("10.0.0.1", "192.0.2.9, 192.0.2.1", "192.0.2.1"),  # the client wrote the first
        ("10.0.0.1", "192.0.2.1, 10.0.0.2", "192.0.2.1"),  # two proxies
        ("10.0.0.1", "nonsense, 192.0.2.1", "192.0.2.1"),
        ("10.0.0.1", "192.0.2.1, nonsense", "10.0.0.1"),  # no proxy wrote that: stop at the last one
        ("10.0.0.1", "10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", None, "10.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),  # one client holds a /64
        ("fd00::1", "2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.5", None, "192.0.2.5"),
    ],
)
def test_client_address(remote, forwarded, expected):
    meta = {"REMOTE_ADDR": remote, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    assert client_address(meta, PROXIES) == expected


def test_the_window_closes_a_minute_after_its_first_failure():
    limiter, now = FailureLimiter("test"), [0.0]
    limiter.clock = lambda: now[0]
    for at in (0, 10, 20):
        now[0] = at
        assert limiter.retry_after("x", 3) == 0
        limiter.fail("x", 3)
    for at, wait in [(20, 40), (30.5, 30), (59.9, 1), (60, 0)]:  # at 60 the window closes
        now[0] = at
        assert limiter.retry_after("x", 3) == wait, at
    assert limiter.retry_after("x", 0) == 0  # no limit
    limiter.fail("x", 3)  # a new window
    assert ClientLimit.objects.get().hits == 1


def test_closed_windows_are_forgotten():
    limiter, now = FailureLimiter("test"), [0.0]
    limiter.clock = lambda: now[0]
    for key in ("a", "b", "c"):
        limiter.fail(key, 1)
    now[0] = 61
    limiter.fail("d", 1)  # its window opens: the others' closed
    assert list(ClientLimit.objects.values_list("name", flat=True)) == ["test d"]
