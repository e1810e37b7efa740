"""The list envelope through ``/api/rule`` (88 rows): links, headers, sorting and bad arguments."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Rule
from collaborations.models import Organization
from tests.factories import bearer, make_org, make_user
from vantage6.api.pagination import page_links

RULES = 88  # the 86 of vantage6 and the two audit rules


def _get(api, auth, query: str = ""):
    return api.get(f"/api/rule{query}", **auth)


def test_first_page_has_the_default_size_and_no_previous_link(api, auth):
    response = _get(api, auth)
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"data", "links"}
    assert [row["id"] for row in body["data"]] == list(
        Rule.objects.order_by("id").values_list("id", flat=True)[:10]
    )
    assert body["links"] == {
        "first": "/api/rule?page=1",
        "self": "/api/rule?page=1",
        "next": "/api/rule?page=2",
        "last": "/api/rule?page=9",
    }
    assert list(body["links"]) == ["first", "self", "next", "last"]


def test_middle_page_keeps_other_arguments_and_replaces_page_in_place(api, auth):
    body = _get(api, auth, "?per_page=5&page=3&operation=v").json()
    views = Rule.objects.filter(operation="VIEW").count()
    last = -(-views // 5)
    assert body["links"] == {
        "first": "/api/rule?per_page=5&page=1&operation=v",
        "previous": "/api/rule?per_page=5&page=2&operation=v",
        "self": "/api/rule?per_page=5&page=3&operation=v",
        "next": "/api/rule?per_page=5&page=4&operation=v",
        "last": f"/api/rule?per_page=5&page={last}&operation=v",
    }
    assert len(body["data"]) == 5
    assert all(row["operation"] == "VIEW" for row in body["data"])


def test_last_page_is_partial_and_has_no_next_link(api, auth):
    body = _get(api, auth, "?per_page=20&page=5").json()
    assert len(body["data"]) == RULES - 4 * 20
    assert "next" not in body["links"]
    assert body["links"]["last"] == body["links"]["self"] == "/api/rule?per_page=20&page=5"


def test_only_the_first_value_of_a_repeated_argument_survives_in_links(api, auth):
    body = _get(api, auth, "?per_page=50&per_page=3").json()
    assert len(body["data"]) == 50
    assert body["links"]["self"] == "/api/rule?per_page=50&page=1"


def test_empty_result_has_no_last_link(api, auth):
    response = _get(api, auth, "?name=no-such-resource")
    assert response.json() == {
        "data": [],
        "links": {
            "first": "/api/rule?name=no-such-resource&page=1",
            "self": "/api/rule?name=no-such-resource&page=1",
        },
    }
    assert response["total-count"] == "0"


def test_headers_count_link_and_exposed_names(api, auth):
    response = _get(api, auth, "?per_page=30&page=2")
    links = response.json()["links"]
    assert response["total-count"] == str(RULES)
    assert response["Link"] == ",".join(f"<{url}>; rel={rel}" for rel, url in links.items())
    assert response["Link"].startswith(
        "</api/rule?per_page=30&page=1>; rel=first,</api/rule?per_page=30&page=1>; rel=previous,"
    )
    assert response["access-control-expose-headers"] == "total-count, Link"


def test_page_beyond_the_end_is_an_empty_page(api, auth):
    response = _get(api, auth, "?page=100")
    assert response.status_code == 200
    assert response.json()["data"] == []
    assert response["total-count"] == str(RULES)
    assert response.json()["links"]["previous"] == "/api/rule?page=99"


def _names_and_ids(body):
    return [(row["name"], row["id"]) for row in body["data"]]


def test_sort_ascending_descending_and_on_several_fields(api, auth):
    everything = "&per_page=100"
    by_name = _names_and_ids(_get(api, auth, "?sort=name" + everything).json())
    assert by_name == sorted(by_name)  # name, then id breaks ties
    by_name_desc = [row["name"] for row in _get(api, auth, "?sort=-name" + everything).json()["data"]]
    assert by_name_desc == sorted(by_name_desc, reverse=True)
    rows = _get(api, auth, "?sort=name,-id" + everything).json()["data"]
    keys = [(row["name"], -row["id"]) for row in rows]
    assert keys == sorted(keys)
    assert len(rows) == RULES


def test_sort_is_applied_before_paging(api, auth):
    page_two = _get(api, auth, "?sort=-id&per_page=10&page=2").json()["data"]
    ids = sorted(Rule.objects.values_list("id", flat=True), reverse=True)
    assert [row["id"] for row in page_two] == ids[10:20]


@pytest.mark.parametrize(
    ("query", "msg_part"),
    [
        ("?page=0", "page"),
        ("?page=-1", "page"),
        ("?page=abc", "page"),
        ("?per_page=0", "per_page"),
        ("?per_page=-1", "per_page"),
        ("?per_page=abc", "per_page"),
        ("?page=1.5", "page"),
        ("?page=99999999999999999999999", "page"),
        ("?per_page=99999999999999999999999", "per_page"),
        ("?sort=nonexistent", "nonexistent"),
        ("?sort=name,-bogus", "bogus"),
        ("?sort=roles", "roles"),
        ("?sort=name__icontains", "name__icontains"),
    ],
)
def test_malformed_paging_arguments_are_a_400_with_a_message(api, auth, query, msg_part):
    response = _get(api, auth, query)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert msg_part in response.json()["msg"]


def test_unknown_sort_field_message_names_model_and_field(api, auth):
    assert _get(api, auth, "?sort=color").json() == {
        "msg": "Cannot sort a 'Rule' by 'color' because it does not exist"
    }


def test_number_of_queries_does_not_grow_with_the_page_size(api, auth):
    _get(api, auth, "?per_page=1")  # the first request also records last_seen
    with CaptureQueriesContext(connection) as small:
        assert len(_get(api, auth, "?per_page=1").json()["data"]) == 1
    with CaptureQueriesContext(connection) as big:
        assert len(_get(api, auth, f"?per_page={RULES - 1}").json()["data"]) == RULES - 1
    assert len(small) == len(big)


VIEW_RULES = Rule.objects.filter(operation="VIEW")


# Statements besides the caller's: the page, each row with the number of all rows (a list's own
# rows, compiled: ``vantage6.api.sql.CompiledList``); past the end, the count apart. A filtered page
# (the ORM's query) tells the number itself when it is the last, else the count comes apart.
@pytest.mark.parametrize(
    ("query", "rows", "statements"),
    [
        ("?per_page=20&page=5", RULES - 80, 1),
        (f"?per_page={RULES + 1}", RULES, 1),
        ("?per_page=22&page=3", 22, 1),
        (f"?per_page={RULES}", RULES, 1),
        ("?per_page=20&page=6", 0, 2),  # past the end: the total is still the number of rows
        ("?no_pagination=1", RULES, 1),
        ("?operation=v&name=nothing", 0, 1),  # the first page and empty: no rows at all
        ("?operation=v&per_page=2", 2, 2),  # more rows follow
        ("?operation=v&per_page=1000", "view rules", 1),  # the last page, one row asked for beyond it
    ],
)
def test_a_count_query_only_where_the_page_cannot_tell_the_number_of_rows(api, auth, query, rows, statements):
    _get(api, auth)  # the first request also records last_seen
    with CaptureQueriesContext(connection) as captured:
        response = _get(api, auth, query)
    expected = VIEW_RULES.count() if rows == "view rules" else rows
    assert len(response.json()["data"]) == expected
    total = {"nothing": 0, "operation=v": VIEW_RULES.count()}
    assert response["total-count"] == str(next((n for key, n in total.items() if key in query), RULES))
    assert len(captured) == 1 + statements


def test_page_size_is_capped(api, db):  # noqa: ARG001
    """A huge ``per_page`` gets pages of the cap, with links to the rest, not one unbounded page."""
    root = make_user(make_org("root-org"), "Root")
    Organization.objects.bulk_create(Organization(name=f"org-{n}") for n in range(1000))
    response = api.get(f"/api/organization?per_page={2**31 - 1}", **bearer(root))
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1000
    assert response["total-count"] == "1001"
    assert response.json()["links"]["next"] == f"/api/organization?per_page={2**31 - 1}&page=2"
    assert len(api.get(f"/api/organization?per_page={2**31 - 1}&page=2", **bearer(root)).json()["data"]) == 1


@pytest.mark.parametrize(
    "params",
    [
        [],
        [("page", "2")],
        [("per_page", "5"), ("page", "2"), ("sort", "-name")],
        [("name", "a b&c=d/é"), ("per_page", "5")],
        [("page", "x"), ("include", "task,runs")],
    ],
)
def test_a_link_is_the_query_with_its_page_in_place(params):
    """The links keep every argument (encoded) and their order; ``page`` is replaced, or comes last."""
    for page in (1, 7):
        replaced = [(key, str(page) if key == "page" else value) for key, value in params]
        if "page" not in dict(params):
            replaced.append(("page", str(page)))
        assert page_links("/api/rule", params)(page) == f"/api/rule?{urlencode(replaced)}"
