"""A query parameter with a NUL character is malformed input: a 400 naming it, never a 500 (PostgreSQL
refuses such a string outright), whatever the kind of filter and on every database."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_org, make_user

pytestmark = pytest.mark.django_db

QUERIES = [
    ("/api/organization?name=a%00b", "name"),  # like
    ("/api/organization?country=%00", "country"),  # text
    ("/api/user?username=%00", "username"),  # like
    ("/api/role?name=%00", "name"),  # likes
    ("/api/role?name=admin&name=%00", "name"),  # likes, not the first
    ("/api/organization?ids=1,%00", "ids"),  # ids
    ("/api/task?include=%00", "include"),  # list
]


@pytest.mark.parametrize(("query", "name"), QUERIES)
def test_a_nul_in_a_query_parameter_is_a_400(api, query, name):
    root = bearer(make_user(make_org("A"), "Root"))
    answer = api.get(query, **root)
    assert answer.status_code == 400, answer.content
    assert answer.json()["msg"].startswith(name)
