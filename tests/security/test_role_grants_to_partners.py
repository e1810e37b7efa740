"""A Collaboration Admin giving the users of a partner organization roles: only rules it holds itself, only
roles of that organization or built-in ones, and only where the partner is in no collaboration the admin is
not in (the rules of an Organization Admin of that partner reach every collaboration of the partner)."""

from __future__ import annotations

import pytest

from accounts.models import Role, User
from tests.factories import bearer, make_collab, make_org, make_user

pytestmark = pytest.mark.django_db


def _roles_of(user: User) -> list[str]:
    return sorted(User.objects.get(pk=user.pk).roles.values_list("name", flat=True))


def _grant(api, admin: dict, user: User, *roles: Role):
    return api.patch(f"/api/user/{user.pk}", {"roles": [role.pk for role in roles]}, format="json", **admin)


@pytest.fixture
def scene(world):
    admin = bearer(make_user(world.org_a, "Collaboration Admin"))
    return admin, make_user(world.org_b, "Researcher")


def test_no_organization_admin_for_a_partner_that_is_in_other_collaborations(api, world, scene):
    admin, partner_user = scene
    make_collab(world.org_b, make_org("D"), name="BD")

    response = _grant(api, admin, partner_user, Role.objects.get(name="Organization Admin"))

    assert response.status_code == 401
    assert _roles_of(partner_user) == ["Researcher"]


def test_no_role_it_does_not_hold_nor_a_role_of_another_organization(api, world, scene):
    admin, partner_user = scene
    own_role = Role.objects.create(name="A's own", organization=world.org_a)

    answers = [_grant(api, admin, partner_user, role) for role in (Role.objects.get(name="Root"), own_role)]

    assert [answer.status_code for answer in answers] == [401, 401]
    assert "(" in answers[0].json()["msg"]  # names the rule it lacks
    assert _roles_of(partner_user) == ["Researcher"]


def test_a_partner_of_its_own_collaborations_alone_gets_what_the_admin_holds(api, scene):
    admin, partner_user = scene

    response = _grant(api, admin, partner_user, Role.objects.get(name="Organization Admin"))

    assert response.status_code == 200
    assert _roles_of(partner_user) == ["Organization Admin"]
