"""Deep pages of lists that need DISTINCT (their filters cross a many-to-many relation: a study's
organizations, a rule's users and roles) choose their keys first, as the other lists do: the OFFSET skips
keys in a subquery, not whole rows of the DISTINCT query. The pages still give every row once, in order."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Rule
from tests.factories import bearer, make_collab, make_org, make_study, make_user

pytestmark = pytest.mark.django_db

PER_PAGE = 3


@pytest.fixture
def studies_viewer():
    """A viewer of its organization's studies (a DISTINCT list: organization scope crosses the studies'
    organizations), which are in 8 studies of 2 organizations each."""
    own, other = make_org(), make_org()
    collaboration = make_collab(own, other)
    for name in "hbfdgaec":
        make_study(collaboration, own, other, name=f"study {name}")
    make_study(collaboration, other, name="not its own")
    rule = Rule.objects.get(name="study", scope="ORGANIZATION", operation="VIEW")
    return make_user(own, rules=[rule])


@pytest.fixture
def rules_holder():
    """A user whose rules (``/rule?user_id=``, a DISTINCT list) come from its role and its own rules,
    which two other users also hold: without DISTINCT, those rules would show once per holder."""
    org = make_org()
    own = list(Rule.objects.filter(name="study"))
    user = make_user(org, "Researcher", rules=own)
    make_user(org, rules=own)
    make_user(org, rules=own)
    return user


def _page_ids(api, user, path: str, page: int, per_page: int = PER_PAGE) -> tuple[list[int], list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(f"{path}&page={page}&per_page={per_page}", **bearer(user))
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["data"]], [query["sql"] for query in captured]


LISTS = [
    ("studies_viewer", "/api/study?"),  # compiled by CompiledList
    ("studies_viewer", "/api/study?name=study%25"),  # the ORM's query (a filter)
    ("studies_viewer", "/api/study?sort=-name"),
    ("rules_holder", "/api/rule?user_id={id}"),
    ("rules_holder", "/api/rule?user_id={id}&sort=-name"),
]


@pytest.mark.parametrize(("who", "path"), LISTS)
def test_deep_pages_of_a_distinct_list_skip_keys_and_give_every_row_once(api, request, who, path):
    user = request.getfixturevalue(who)
    path = path.format(id=user.pk)
    whole, _ = _page_ids(api, user, path, 1, per_page=1000)
    assert len(whole) == len(set(whole)) > 2 * PER_PAGE
    pages = []
    for page in range(1, len(whole) // PER_PAGE + 2):
        ids, statements = _page_ids(api, user, path, page)
        pages += ids
        if page > 1:
            [read] = [sql for sql in statements if "OFFSET" in sql]
            # the OFFSET of the page's keys, in the subquery that chooses them; none over whole rows
            assert re.search(r"OFFSET \d+\)", read), read
            assert not re.search(r"OFFSET \d+\s*$", read), read
    assert pages == whole
