"""``GET /user/<id>?include_permissions`` lists the organizations of the user's organization's
collaborations: to another organization's administrator only those of the collaborations it is in, not the
partners the user's organization has elsewhere (which ``GET /organization?collaboration_id=`` refuses it)."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_collab, make_org, make_user

pytestmark = pytest.mark.django_db


def _partners(api, user, headers) -> list[int]:
    response = api.get(f"/api/user/{user.pk}?include_permissions=true", **headers)
    assert response.status_code == 200, response.content
    return response.json()["permissions"]["orgs_in_collabs"]


def test_another_organizations_partners_elsewhere_are_not_listed(api, world):
    org_d = make_org()
    collab_bd = make_collab(world.org_b, org_d)
    user_b = make_user(world.org_b, "Researcher")
    admin_a = bearer(make_user(world.org_a, "Collaboration Admin"))
    assert api.get(f"/api/organization?collaboration_id={collab_bd.pk}", **admin_a).status_code == 401

    assert _partners(api, user_b, admin_a) == sorted([world.org_a.pk, world.org_b.pk])
    # The user itself, and who views every collaboration, get them all.
    everyone = sorted([world.org_a.pk, world.org_b.pk, org_d.pk])
    assert _partners(api, user_b, bearer(user_b)) == everyone
    assert _partners(api, user_b, bearer(make_user(world.org_c, "Root"))) == everyone
