"""The text filters of the lists are LIKE patterns whose backslash takes the next character as it is (as
in vantage6 on PostgreSQL). A pattern ending in a lone backslash escapes nothing: PostgreSQL refused it
with an error, a 500; it is a 400 on every list and database, and an escaped backslash is text."""

from __future__ import annotations

import pytest

from accounts.models import Role
from collaborations.models import Organization
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db

# Every list with a pattern filter, one of its pattern filters each.
FILTERS = [
    ("organization", "name"),
    ("collaboration", "name"),
    ("study", "name"),
    ("algorithmstore", "url"),
    ("node", "name"),
    ("task", "image"),
    ("user", "email"),
    ("role", "description"),
]


@pytest.fixture
def root(world) -> dict[str, str]:
    return bearer(make_user(world.org_a, "Root"))


@pytest.mark.parametrize(("resource", "name"), FILTERS)
@pytest.mark.parametrize("pattern", ["\\", "a%\\", "\\\\\\"])
def test_a_pattern_ending_in_a_lone_backslash_is_a_400(api, root, resource, name, pattern):
    response = api.get(f"/api/{resource}", {name: pattern}, **root)
    assert response.status_code == 400, response.content
    assert name in response.json()["msg"]


def test_a_backslash_takes_the_next_character_as_it_is(api, root):
    Organization.objects.create(name="50% off")
    Organization.objects.create(name="50 off")
    Organization.objects.create(name="back\\slash")

    def names(pattern: str) -> list[str]:
        response = api.get("/api/organization", {"name": pattern}, **root)
        assert response.status_code == 200, response.content
        return sorted(row["name"] for row in response.json()["data"])

    assert names("50\\%%") == ["50% off"]
    assert names("50%") == ["50 off", "50% off"]
    assert names("back\\\\slash") == ["back\\slash"]


def test_the_patterns_of_a_repeated_filter_are_checked_each(api, root):
    Role.objects.create(name="kept", description="x")
    response = api.get("/api/role", {"name": ["kept", "x\\"]}, **root)
    assert response.status_code == 400, response.content
    assert "name" in response.json()["msg"]
