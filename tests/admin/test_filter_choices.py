"""The filter sidebars of the admin offer only what the logged-in user may see."""

from __future__ import annotations

import pytest

from accounts.catalogue import COL_ADMIN, ORG_ADMIN, ROOT
from collaborations.models import Collaboration
from tests.admin.browser import Browser
from tests.factories import make_collab, make_org, make_user

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/accounts/user/",
    "/admin/accounts/role/",
    "/admin/nodes/node/",
    "/admin/collaborations/study/",
    "/admin/collaborations/collaboration/",
    "/admin/collaborations/organization/",
]


@pytest.fixture(autouse=True)
def strangers(world) -> list[str]:
    """Names the admins of organization A must not learn: an organization and collaborations it is not in."""
    hidden = make_org("Hidden Hospital")
    make_collab(hidden, world.org_c, name="Secret Trial")
    Collaboration.objects.filter(pk=world.collab_c.pk).update(name="Covert Consortium")
    return ["Hidden Hospital", "Secret Trial", "Covert Consortium", ">C<"]


@pytest.mark.parametrize("page", PAGES)
def test_an_organization_admin_sees_no_other_names_in_the_filters(world, strangers, page):
    make_user(world.org_a, ORG_ADMIN, username="admin_a")
    html = Browser("admin_a").get(page).content.decode()
    for name in strangers:
        assert name not in html, (page, name)


def test_the_filters_offer_what_is_visible(world):
    make_user(world.org_a, ORG_ADMIN, username="admin_a")
    html = Browser("admin_a").get("/admin/accounts/user/").content.decode()
    # Organizations A and B share a collaboration: both are choices of the organization filter.
    assert f"organization__id__exact={world.org_a.pk}" in html
    assert f"organization__id__exact={world.org_b.pk}" in html
    make_user(world.org_a, ROOT, username="root_a")
    html = Browser("root_a").get("/admin/nodes/node/").content.decode()
    assert "Secret Trial" in html and "Covert Consortium" in html


def test_a_collaboration_admin_is_offered_only_its_collaborations(world):
    make_user(world.org_a, COL_ADMIN, username="col_admin_a")
    html = Browser("col_admin_a").get("/admin/nodes/node/").content.decode()
    assert "Secret Trial" not in html and "Covert Consortium" not in html
