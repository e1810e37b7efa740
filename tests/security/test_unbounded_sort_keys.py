"""A run's input, result and log are texts of any length (megabytes each): ordering a list by one made the
database compare them whole, seconds for a thousand runs (2 s for ten rows of a thousand of 1 MiB on
PostgreSQL, 24 s for a page of a thousand), for one request of anyone who may list runs. They are no sort
keys: the request is refused before the database is asked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("key", ["input", "-result", "log"])
def test_a_run_list_is_not_sorted_by_a_text_of_any_length(api, world, key):
    user = factories.make_user(world.org_a, "Root")
    factories.make_run(factories.make_task(world.collab_ab, world.org_a), world.org_a, input="x" * 1000)
    headers = factories.bearer(user)

    with CaptureQueriesContext(connection) as queries:
        answer = api.get(f"/api/run?sort={key}", **headers)

    assert answer.status_code == 400, answer.content
    assert answer.json()["msg"] == f"Cannot sort a 'Run' by '{key.lstrip('-')}' because it does not exist"
    assert not any('FROM "run"' in query["sql"] for query in queries.captured_queries)


def test_a_run_list_is_still_sorted_by_its_other_fields(api, world):
    user = factories.make_user(world.org_a, "Root")
    factories.make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    answer = api.get("/api/run?sort=-organization_id", **factories.bearer(user))
    assert answer.status_code == 200, answer.content
    orgs = [row["organization"]["id"] for row in answer.json()["data"]]
    assert orgs == sorted(orgs, reverse=True)
