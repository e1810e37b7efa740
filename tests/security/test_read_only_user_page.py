"""The admin site's page of a user that the staff member may view but not change is shown read-only
(it was a server error: the form offered choices in fields a read-only page does not have)."""

from __future__ import annotations

import pytest

from accounts.models import Rule
from tests.admin.browser import Browser
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_a_user_viewed_but_not_changeable_shows_read_only(world):
    partner_view = Rule.objects.filter(name="user", scope="COLLABORATION", operation="VIEW")
    make_user(world.org_a, "Organization Admin", username="org_admin_a", rules=partner_view)
    partner = make_user(world.org_b, "Researcher", username="partner-b")
    browser = Browser("org_admin_a")

    page = browser.get(f"/admin/accounts/user/{partner.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "partner-b" in html
    assert 'name="email"' not in html and 'name="new_password"' not in html
