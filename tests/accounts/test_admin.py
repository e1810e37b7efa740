"""The admin site under the API's rules: who gets in, which rows they see, what they may change."""

from __future__ import annotations

import pytest

from accounts.catalogue import COL_ADMIN, ORG_ADMIN, RESEARCHER, ROOT, VIEWER
from accounts.models import Role, Rule, User
from collaborations.models import Organization
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_admin(world):
    return make_user(world.org_a, ORG_ADMIN, username="admin_a")


def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("role", "staff"),
    [(VIEWER, False), (RESEARCHER, False), (ORG_ADMIN, True), (COL_ADMIN, True), (ROOT, True)],
)
def test_staff_follows_the_rules(client, world, role, staff):
    user = make_user(world.org_a, role)
    assert user.is_staff is staff
    response = logged_in(client, user).get("/admin/")
    assert response.status_code == (200 if staff else 302)


def test_admin_login_uses_the_lock_out(client, world):
    user = make_user(world.org_a, ORG_ADMIN, username="boss")
    response = client.post("/admin/login/", {"username": "boss", "password": "wrong"})
    assert response.status_code == 200  # the form again, with an error
    user.refresh_from_db()
    assert user.failed_login_attempts == 1
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_admin_login_asks_for_the_two_factor_code(client, world, settings):
    from accounts import totp

    settings.TWO_FACTOR_AUTH = True
    user = make_user(world.org_a, ORG_ADMIN, username="boss")
    User.objects.filter(pk=user.pk).update(otp_secret=totp.new_secret())
    user.refresh_from_db()
    page = client.get("/admin/login/")
    assert b'name="mfa_code"' in page.content
    assert client.post("/admin/login/", {"username": "boss", "password": PASSWORD}).status_code == 200
    code = totp.totp(user.otp_secret)
    ok = client.post(
        "/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD, "mfa_code": code}
    )
    assert ok.status_code == 302


def test_organization_admin_sees_only_own_organization_users(client, world, org_admin):
    make_user(world.org_a, VIEWER, username="colleague")
    make_user(world.org_b, VIEWER, username="partner")
    make_user(world.org_c, VIEWER, username="stranger")
    page = logged_in(client, org_admin).get("/admin/accounts/user/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "colleague" in text
    assert "partner" not in text and "stranger" not in text


def test_organization_admin_cannot_open_another_organizations_user(client, world, org_admin):
    partner = make_user(world.org_b, VIEWER, username="partner")
    response = logged_in(client, org_admin).get(f"/admin/accounts/user/{partner.pk}/change/")
    assert response.status_code == 302  # "does not exist" for this admin


def _user_form(user, **changes) -> dict:
    data = {
        "username": user.username, "email": user.email, "firstname": user.firstname,
        "lastname": user.lastname, "organization": user.organization_id, "new_password": "",
        "roles": list(user.roles.values_list("pk", flat=True)),
        "rules": list(user.rules.values_list("pk", flat=True)),
    }  # fmt: skip
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_admin_change_refuses_escalation(client, world, org_admin):
    colleague = make_user(world.org_a, VIEWER, username="colleague")
    researcher = Role.objects.get(name=RESEARCHER).pk
    form = _user_form(colleague, roles=[researcher])
    response = logged_in(client, org_admin).post(f"/admin/accounts/user/{colleague.pk}/change/", form)
    assert response.status_code == 200  # the form again
    assert "You don&#x27;t have the rule (task, collaboration, create)" in response.content.decode()
    assert list(colleague.roles.values_list("name", flat=True)) == [VIEWER]


def test_admin_change_of_a_user(client, world, org_admin):
    colleague = make_user(world.org_a, VIEWER, username="colleague")
    form = _user_form(colleague, firstname="Changed", new_password="Another1!pass")
    response = logged_in(client, org_admin).post(f"/admin/accounts/user/{colleague.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    colleague.refresh_from_db()
    assert colleague.firstname == "Changed"
    assert colleague.password.startswith("$2") and colleague.check_password("Another1!pass")


def test_admin_adds_a_user_with_a_hashed_password(client, world, org_admin):
    viewer = Role.objects.get(name=VIEWER).pk
    form = {
        "username": "newbie", "email": "newbie@example.org", "organization": world.org_a.pk,
        "new_password": "Newbie1!pass", "roles": [viewer],
    }  # fmt: skip
    response = logged_in(client, org_admin).post("/admin/accounts/user/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    newbie = User.objects.get(username="newbie")
    assert newbie.check_password("Newbie1!pass") and newbie.password.startswith("$2")
    assert list(newbie.roles.values_list("pk", flat=True)) == [viewer]


def test_admin_add_in_another_organization_is_refused(client, world, org_admin):
    form = {
        "username": "newbie",
        "email": "n@example.org",
        "organization": world.org_b.pk,
        "new_password": "Newbie1!pass",
    }
    response = logged_in(client, org_admin).post("/admin/accounts/user/add/", form)
    assert response.status_code == 200
    assert not User.objects.filter(username="newbie").exists()


def test_admin_roles_and_rules(client, world, org_admin):
    own = Role.objects.create(name="own-role", organization=world.org_a)
    Role.objects.create(name="foreign-role", organization=world.org_c)
    logged_in(client, org_admin)
    text = client.get("/admin/accounts/role/").content.decode()
    assert "own-role" in text and "foreign-role" not in text
    # built-in roles are shown read-only
    builtin = Role.objects.get(name=VIEWER)
    assert client.post(f"/admin/accounts/role/{builtin.pk}/change/", {"name": "x"}).status_code == 403
    # a role edit with a rule the admin lacks is refused
    form = {
        "name": "own-role",
        "description": "",
        "rules": [Rule.objects.get(name="task", scope="GLOBAL", operation="VIEW").pk],
    }
    assert client.post(f"/admin/accounts/role/{own.pk}/change/", form).status_code == 200
    assert own.rules.count() == 0
    # rules are read-only
    rule = Rule.objects.first()
    assert client.get(f"/admin/accounts/rule/{rule.pk}/change/").status_code == 200
    assert client.post(f"/admin/accounts/rule/{rule.pk}/change/", {"name": "x"}).status_code == 403
    assert client.get("/admin/accounts/rule/add/").status_code == 403


def test_admin_organizations(client, world, org_admin):
    logged_in(client, org_admin)
    text = client.get("/admin/collaborations/organization/").content.decode()
    assert f"/admin/collaborations/organization/{world.org_a.pk}/change/" in text
    assert f"/admin/collaborations/organization/{world.org_c.pk}/change/" not in text
    assert client.get("/admin/collaborations/organization/add/").status_code == 403
    response = client.post(
        f"/admin/collaborations/organization/{world.org_a.pk}/change/",
        {"name": "A renamed", "domain": "a.org"},
    )
    assert response.status_code == 302
    assert Organization.objects.get(pk=world.org_a.pk).name == "A renamed"


def test_no_guardian_rows_are_written(client, world, org_admin):
    from guardian.models import UserObjectPermission

    test_admin_adds_a_user_with_a_hashed_password(client, world, org_admin)
    assert UserObjectPermission.objects.count() == 0


def test_a_stored_object_grant_does_not_widen_the_rules(client, world, org_admin):
    """Only the scope definitions answer ``has_perm`` with an object: a per-object grant row (put in
    by a shell, a restore or a plugin) gives nothing beyond the rules, on the admin site or off it."""
    from guardian.shortcuts import assign_perm

    assign_perm("collaborations.change_organization", org_admin, world.org_c)
    assign_perm("collaborations.delete_organization", org_admin, world.org_c)
    assert not org_admin.has_perm("collaborations.change_organization", world.org_c)
    assert not User.objects.get(pk=org_admin.pk).has_perm("collaborations.delete_organization", world.org_c)
    logged_in(client, org_admin)
    response = client.post(
        f"/admin/collaborations/organization/{world.org_c.pk}/change/", {"name": "taken", "domain": "c.org"}
    )
    assert response.status_code in (302, 403)
    assert Organization.objects.get(pk=world.org_c.pk).name == world.org_c.name
