"""Identifiers beyond the database's 64-bit integers name no row: a 400 or 404, never a 500."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_org, make_user

HUGE = ["-18868875040543343640576", str(-(2**63) - 1), str(2**63), "18868875040543343640576"]


@pytest.mark.django_db
@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("path", ["/api/task?init_user_id={}", "/api/user/{}", "/api/organization/{}"])
def test_an_identifier_out_of_range_names_no_row(client, path, value):
    root = make_user(make_org("root-org"), "Root")
    answer = client.get(path.format(value), **bearer(root))
    assert answer.status_code in (400, 404), answer.content
    assert "msg" in answer.json()


@pytest.mark.django_db
@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    "query",
    ["/api/node?collaboration_id={}", "/api/organization?ids=1,{}", "/api/user?organization_id={}"],
)
def test_a_list_filter_out_of_range_is_a_400(client, query, value):
    root = make_user(make_org("root-org"), "Root")
    answer = client.get(query.format(value), **bearer(root))
    assert answer.status_code == 400, answer.content
    assert "must be an integer" in answer.json()["msg"]
