"""``GET /collaboration?algorithm_store_id=`` naming a store the caller may not view answers as for an id
of no store: an empty list for a hidden store next to a 404 for a missing one told which ids exist."""

from __future__ import annotations

import pytest

from collaborations.models import AlgorithmStore
from tests.factories import bearer, make_org, make_user

pytestmark = pytest.mark.django_db

MISSING = 2_000_000


@pytest.mark.parametrize("role", ["Researcher", "Collaboration Admin"])
def test_a_hidden_store_filter_answers_as_a_missing_one(api, world, role):
    hidden = AlgorithmStore.objects.create(
        name="store-c", url="https://store.example.org/api", collaboration=world.collab_c
    )
    caller = bearer(make_user(world.org_a, role))

    of_hidden = api.get(f"/api/collaboration?algorithm_store_id={hidden.pk}", **caller)
    of_none = api.get(f"/api/collaboration?algorithm_store_id={MISSING}", **caller)

    assert (of_hidden.status_code, of_hidden.json()) == (of_none.status_code, of_none.json())
    assert of_hidden.status_code == 401


def test_a_store_the_caller_views_still_filters(api, world):
    own = AlgorithmStore.objects.create(
        name="store-ab", url="https://store.example.org/api", collaboration=world.collab_ab
    )
    everywhere = AlgorithmStore.objects.create(name="store-all", url="https://all.example.org/api")
    caller = bearer(make_user(world.org_a, "Researcher"))

    linked = api.get(f"/api/collaboration?algorithm_store_id={own.pk}", **caller)
    for_all = api.get(f"/api/collaboration?algorithm_store_id={everywhere.pk}", **caller)

    assert [row["id"] for row in linked.json()["data"]] == [world.collab_ab.pk]
    assert [row["id"] for row in for_all.json()["data"]] == [world.collab_ab.pk]
    root = bearer(make_user(make_org("root-org"), "Root"))
    assert api.get(f"/api/collaboration?algorithm_store_id={MISSING}", **root).status_code == 404
