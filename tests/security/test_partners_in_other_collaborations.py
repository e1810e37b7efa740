"""A Collaboration Admin of AB manages the organizations of AB, their users and roles (vantage6: the
collaboration-scope rules), but not those of a partner that is also in a collaboration the admin's
organization is not in: an organization's name, address and domain are what the members of its other
collaborations know it by, and its accounts and roles are what its own administrators give rights in
them (an account whose e-mail address the admin set is the admin's once it holds any)."""

from __future__ import annotations

import pytest

from accounts.models import Role, Rule, User
from collaborations.models import Organization
from tests.factories import PASSWORD, bearer, make_user
from tests.security.partners import collaboration_admin_site, partner_also_elsewhere

pytestmark = pytest.mark.django_db


@pytest.fixture
def b_elsewhere(world):
    return partner_also_elsewhere(world)


def _stored(organization: Organization) -> tuple:
    organization.refresh_from_db()
    return organization.name, organization.domain, organization.address1


def test_a_collaboration_admin_cannot_edit_a_partner_that_is_in_other_collaborations(api, world, b_elsewhere):
    admin = bearer(make_user(world.org_a, "Collaboration Admin"))
    before = _stored(b_elsewhere)

    response = api.patch(
        f"/api/organization/{b_elsewhere.pk}",
        {"name": "C's trusted lab", "domain": "attacker.example.org", "address1": "elsewhere"},
        format="json",
        **admin,
    )

    assert response.status_code == 401
    assert response.json() == {"msg": "You lack the permission to do that!"}
    assert _stored(b_elsewhere) == before
    # it still views the partner
    assert api.get(f"/api/organization/{b_elsewhere.pk}", **admin).status_code == 200


def test_nor_through_the_admin_site(world, b_elsewhere):
    browser = collaboration_admin_site(world)
    before = _stored(b_elsewhere)

    response = browser.submit(
        f"/admin/collaborations/organization/{b_elsewhere.pk}/change/",
        {"name": "C's trusted lab", "domain": "attacker.example.org"},
    )

    assert response.status_code == 403
    assert _stored(b_elsewhere) == before


def _users_and_roles() -> tuple:
    return (
        sorted(User.objects.values_list("username", "email", "firstname")),
        sorted(Role.objects.values_list("name", "organization_id")),
        sorted(Role.rules.through.objects.values_list("role_id", "rule_id")),
    )


def test_nor_take_a_partners_account_make_one_there_or_touch_its_roles(api, world, b_elsewhere):
    """The account and the role hold no rule yet: nothing for "hold what you target" to compare."""
    # with the collaboration-scope role rules, which the built-in role leaves out
    role_rules = Rule.objects.filter(name="role", scope="COLLABORATION")
    admin = bearer(make_user(world.org_a, "Collaboration Admin", rules=role_rules))
    dormant = make_user(world.org_b, username="dormant-b")
    role = Role.objects.create(name="role-b", organization=b_elsewhere)
    before = _users_and_roles()

    writes = [
        ("patch", f"/api/user/{dormant.pk}", {"email": "attacker@example.org"}),
        ("patch", f"/api/user/{dormant.pk}", {"firstname": "Root"}),
        ("post", "/api/user", {"username": "planted", "email": "planted@example.org", "password": PASSWORD,
                               "organization_id": b_elsewhere.pk}),
        ("patch", f"/api/role/{role.pk}", {"name": "Viewer (B)"}),
        ("post", "/api/role", {"name": "planted", "rules": [], "organization_id": b_elsewhere.pk}),
        ("delete", f"/api/role/{role.pk}", None),
    ]  # fmt: skip
    answers = [getattr(api, method)(path, body, format="json", **admin) for method, path, body in writes]

    assert [answer.status_code for answer in answers] == [401] * len(writes)
    assert answers[0].json() == {
        "msg": f"Organization id={b_elsewhere.pk} is also in collaborations you are not in: only the global "
        "rule (user, global, edit) reaches it"
    }
    assert _users_and_roles() == before


def test_the_partners_of_its_own_collaborations_alone_and_its_own_organization_stay_editable(api, world):
    role_rules = Rule.objects.filter(name="role", scope="COLLABORATION")
    admin = bearer(make_user(world.org_a, "Collaboration Admin", rules=role_rules))
    world.collab_c.organizations.add(world.org_a)  # A's own organization, in C too
    partner_user = make_user(world.org_b, "Researcher")

    for organization in (world.org_b, world.org_a):
        response = api.patch(
            f"/api/organization/{organization.pk}", {"address1": "new street"}, format="json", **admin
        )
        assert response.status_code == 200, organization
        assert _stored(organization)[2] == "new street"
    renamed = api.patch(f"/api/user/{partner_user.pk}", {"firstname": "Bea"}, format="json", **admin)
    assert renamed.status_code == 200
    body = {
        "username": "new-b",
        "email": "new-b@example.org",
        "password": PASSWORD,
        "organization_id": world.org_b.pk,
    }
    assert api.post("/api/user", body, format="json", **admin).status_code == 201
    role = {"name": "role-b", "rules": [], "organization_id": world.org_b.pk}
    assert api.post("/api/role", role, format="json", **admin).status_code == 201


def test_who_edits_every_organization_still_does(api, world, b_elsewhere):
    editor = bearer(make_user(world.org_a, rules=Rule.objects.filter(scope="GLOBAL", operation="EDIT")))

    response = api.patch(f"/api/organization/{b_elsewhere.pk}", {"address1": "x"}, format="json", **editor)

    assert response.status_code == 200
