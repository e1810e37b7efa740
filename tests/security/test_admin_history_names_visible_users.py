"""A history page of the admin site names who changed the row. An Organization Admin of A views
organization B (a partner in AB) but not B's users: the page must not name B's administrator to them."""

from __future__ import annotations

import pytest

from tests.admin.browser import Browser
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ACTOR = "b-admin-who-renamed-b"


@pytest.fixture
def history(world) -> str:
    """B's Organization Admin renames B on the admin site: the history page of B."""
    actor = make_user(world.org_b, "Organization Admin", username=ACTOR)
    path = f"/admin/collaborations/organization/{world.org_b.pk}/"
    renamed = Browser(actor.username).submit(f"{path}change/", {"name": "B renamed"})
    assert renamed.status_code == 302, renamed.content[:500]
    return f"{path}history/"


@pytest.mark.parametrize(
    ("viewer", "named"),
    [
        (("org_b", "Organization Admin"), True),  # B's own administrators see B's users
        (("org_a", "Collaboration Admin"), True),  # views the users of its collaborations
        (("org_a", "Organization Admin"), False),  # views organization B, not its users
    ],
)
def test_the_history_names_only_users_the_viewer_may_see(world, history, viewer, named):
    organization, role = viewer
    page = Browser(make_user(getattr(world, organization), role).username).get(history)
    assert page.status_code == 200
    assert _names_the_actor(page) is named


def test_the_actor_sees_its_own_change(history):
    page = Browser(ACTOR).get(history)
    assert page.status_code == 200
    assert _names_the_actor(page)


def _names_the_actor(page) -> bool:
    """Whether a row of the history names the actor (the page's header names the viewer)."""
    return f"<td>{ACTOR}" in page.content.decode()
