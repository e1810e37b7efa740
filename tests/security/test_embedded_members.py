"""``include=organizations`` on collaborations and studies shows their members as GET /organization does:
a user whose organization rules reach only its own organization learns no other member's name, address or
key through a collaboration or study it may view, and a user with them reads them as before."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_study
from tests.tasks.conftest import user_with

pytestmark = pytest.mark.django_db

OWN_ORGANIZATION_ONLY = ("collaboration.org.view", "study.org.view", "organization.org.view")


def _paths(world) -> list[str]:
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    return [
        f"/api/collaboration/{world.collab_ab.pk}?include=organizations",
        "/api/collaboration?include=organizations",
        f"/api/study/{study.pk}?include=organizations",
        "/api/study?include=organizations",
    ]


def test_members_are_not_shown_to_who_may_not_view_them(api, world):
    headers = bearer(user_with(world.org_a, *OWN_ORGANIZATION_ONLY))
    assert api.get(f"/api/organization?collaboration_id={world.collab_ab.pk}", **headers).status_code == 401
    for path in _paths(world):
        response = api.get(path, **headers)
        assert response.status_code == 401, path
        assert world.org_b.name not in response.content.decode()


def test_members_are_shown_to_who_may_view_them(api, world):
    headers = bearer(user_with(world.org_a, *OWN_ORGANIZATION_ONLY, "organization.col.view"))
    for path in _paths(world):
        response = api.get(path, **headers)
        assert response.status_code == 200, path
        assert world.org_b.name in response.content.decode()
