"""Every list endpoint of organizations, collaborations, studies, stores and nodes costs a fixed number
of queries, whatever the page size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from collaborations.models import AlgorithmStore
from nodes.models import NodeConfig
from tests.collaborations.helpers import headers_of
from tests.factories import bearer, full_page, make_collab, make_node, make_org, make_study

pytestmark = pytest.mark.django_db

ROWS = 12


@pytest.fixture
def crowd(world):
    """Many rows of every kind that a Viewer of organization A sees."""
    for i in range(ROWS):
        org = make_org(f"crowd-{i}")
        collab = make_collab(world.org_a, org, name=f"crowd-{i}")
        node, _ = make_node(org, collab, f"crowd-node-{i}")
        NodeConfig.objects.bulk_create([NodeConfig(node=node, key="k", value=str(v)) for v in range(3)])
        make_study(collab, world.org_a, org, name=f"crowd-study-{i}")
        AlgorithmStore.objects.create(name=f"s{i}", url=f"https://s{i}.org/api", collaboration=collab)
    return world


def queries(api, url: str, headers: dict) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(url, **headers)
    assert response.status_code == 200, response.content
    return len(captured)


# Authentication (identity with its rules and auth collaborations), the page (with the number of all
# rows), and with a relation to prefetch, the count apart and one query per prefetched relation.
EXPECTED = {
    "/api/organization": 2,
    "/api/collaboration": 2,
    "/api/collaboration?include=organizations": 4,
    "/api/study": 2,
    "/api/study?include=organizations": 4,
    "/api/algorithmstore": 2,
    "/api/node": 2,  # the shared configuration comes with each row
}


@pytest.mark.parametrize("url", EXPECTED)
def test_list_query_count_is_fixed(api, crowd, url):
    headers = headers_of(crowd.org_a, "Viewer")
    api.get("/api/organization", **headers)  # the first call of a user also records when it was seen
    separator = "&" if "?" in url else "?"
    small = queries(api, f"{url}{separator}per_page=1", headers)
    large = queries(api, full_page(api, url, headers), headers)
    assert small == large == EXPECTED[url]


def test_node_sees_its_lists_with_a_fixed_number_of_queries(api, crowd):
    headers = bearer(crowd.node_a)
    api.get("/api/node", **headers)
    for url in ("/api/node", "/api/organization", "/api/collaboration", "/api/study"):
        assert queries(api, f"{url}?per_page=1", headers) == queries(
            api, full_page(api, url, headers), headers
        )
