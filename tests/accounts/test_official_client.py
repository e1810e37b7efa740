"""Users, roles and rules through the official vantage6 4.15.2 client against a live server."""

from __future__ import annotations

import pytest

from accounts.catalogue import ORG_ADMIN, VIEWER
from accounts.models import Role, Rule, User
from tests.factories import PASSWORD, make_collab, make_org, make_user
from vantage6.client import Client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@pytest.fixture
def client(live_server):
    org = make_org("Home")
    make_collab(org, make_org("Partner"), name="together")
    admin = make_user(org, ORG_ADMIN, username="boss")
    host, port = live_server.url.rsplit(":", 1)
    client = Client(host, int(port), "/api", log_level="critical")
    client.authenticate(admin.username, PASSWORD)
    assert client.whoami is not None, "login through the official client failed"
    assert client.whoami.organization_id == org.pk
    assert client.whoami.organization_name == "Home"
    client.home = org
    return client


def test_users_through_the_official_client(client):
    org = client.home
    viewer = Role.objects.get(name=VIEWER, is_default_role=True)
    created = client.user.create(
        username="newbie", firstname="New", lastname="Bie", password="Newbie1!pass",
        email="newbie@example.org", roles=[viewer.pk],
    )  # fmt: skip
    assert created["username"] == "newbie" and created["organization"]["id"] == org.pk
    assert "password" not in created and created["otp_secret"] is None

    listed = client.user.list(per_page=100)["data"]
    assert {user["username"] for user in listed} == {"boss", "newbie"}
    assert client.user.get(created["id"])["email"] == "newbie@example.org"
    assert client.user.list(username="newbie")["data"][0]["id"] == created["id"]

    updated = client.user.update(created["id"], firstname="Renamed")
    assert updated["firstname"] == "Renamed"
    client.user.delete(created["id"])
    assert not User.objects.filter(pk=created["id"]).exists()


def test_roles_and_rules_through_the_official_client(client):
    rule = Rule.objects.get(name="user", scope="ORGANIZATION", operation="VIEW")
    extra = Rule.objects.get(name="organization", scope="ORGANIZATION", operation="VIEW")
    role = client.role.create(name="helpers", description="help", rules=[rule.pk])
    assert role["name"] == "helpers" and role["organization"]["id"] == client.home.pk

    assert client.role.get(role["id"])["description"] == "help"
    roles = client.role.list(per_page=100)["data"]
    assert "helpers" in {r["name"] for r in roles}
    assert [r["id"] for r in client.role.list(organization=client.home.pk)["data"]] == [role["id"]]

    updated = client.role.update(role["id"], rules=[rule.pk, extra.pk])
    assert updated["name"] == "helpers"
    assert set(Role.objects.get(pk=role["id"]).rules.values_list("pk", flat=True)) == {rule.pk, extra.pk}
    client.role.delete(role["id"])
    assert not Role.objects.filter(pk=role["id"]).exists()

    rules = client.rule.list(per_page=100)["data"]
    assert len(rules) == 88  # the 86 of vantage6 and the two audit rules
    assert client.rule.get(rule.pk)["scope"] == "ORGANIZATION"
    assert {
        r["id"] for r in client.rule.list(role=Role.objects.get(name=VIEWER).pk, per_page=100)["data"]
    } == set(Role.objects.get(name=VIEWER).rules.values_list("pk", flat=True))


def test_own_email_change_through_the_official_client_keeps_its_login(client):
    """The client sends no password with the change; its login goes on (the others end)."""
    me = client.whoami.id_
    assert client.user.update(me, email="boss-moved@example.org")["email"] == "boss-moved@example.org"
    assert client.user.get(me)["email"] == "boss-moved@example.org"
    assert User.objects.get(pk=me).recovery_held_until is not None
