"""A Collaboration Admin of AB edits the organizations of AB (vantage6: ``organization`` collaboration-scope
edit), but not one that is also in a collaboration the admin's organization is not in: its name, address
and domain are what the members of that other collaboration know it by."""

from __future__ import annotations

import pytest

from collaborations.models import Organization
from tests.admin.browser import Browser
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def b_also_in_c(world):
    """B, a partner of A in AB, is also in C, where A is not."""
    world.collab_c.organizations.add(world.org_b)
    return world.org_b


def _stored(organization: Organization) -> tuple:
    organization.refresh_from_db()
    return organization.name, organization.domain, organization.address1


def test_a_collaboration_admin_cannot_edit_a_partner_that_is_in_other_collaborations(api, world, b_also_in_c):
    admin = bearer(make_user(world.org_a, "Collaboration Admin"))
    before = _stored(b_also_in_c)

    response = api.patch(
        f"/api/organization/{b_also_in_c.pk}",
        {"name": "C's trusted lab", "domain": "attacker.example.org", "address1": "elsewhere"},
        format="json",
        **admin,
    )

    assert response.status_code == 401
    assert response.json() == {"msg": "You lack the permission to do that!"}
    assert _stored(b_also_in_c) == before
    # it still views the partner
    assert api.get(f"/api/organization/{b_also_in_c.pk}", **admin).status_code == 200


def test_nor_through_the_admin_site(world, b_also_in_c):
    make_user(world.org_a, "Collaboration Admin", username="col_admin_a")
    browser = Browser("col_admin_a")
    before = _stored(b_also_in_c)

    response = browser.submit(
        f"/admin/collaborations/organization/{b_also_in_c.pk}/change/",
        {"name": "C's trusted lab", "domain": "attacker.example.org"},
    )

    assert response.status_code == 403
    assert _stored(b_also_in_c) == before


def test_the_partners_of_its_own_collaborations_alone_and_its_own_organization_stay_editable(api, world):
    admin = bearer(make_user(world.org_a, "Collaboration Admin"))
    world.collab_c.organizations.add(world.org_a)  # A's own organization, in C too

    for organization in (world.org_b, world.org_a):
        response = api.patch(
            f"/api/organization/{organization.pk}", {"address1": "new street"}, format="json", **admin
        )
        assert response.status_code == 200, organization
        assert _stored(organization)[2] == "new street"


def test_who_edits_every_organization_still_does(api, world, b_also_in_c):
    root = bearer(make_user(world.org_a, rules=_global_edit()))

    response = api.patch(f"/api/organization/{b_also_in_c.pk}", {"address1": "x"}, format="json", **root)

    assert response.status_code == 200


def _global_edit():
    from accounts.models import Rule

    return Rule.objects.filter(name="organization", scope="GLOBAL", operation="EDIT")
