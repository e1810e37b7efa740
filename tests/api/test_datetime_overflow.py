"""A time whose offset takes it past the first or last instant a datetime holds (year 1 or 9999 with an
offset) is malformed input: a 400, never a 500, in a list filter and in a node's run update."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tasks.models import Run
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task, make_user

pytestmark = pytest.mark.django_db

EDGES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("value", EDGES)
@pytest.mark.parametrize("name", ["since", "until"])
def test_an_audit_filter_past_the_datetime_range_is_a_400(api, name, value):
    root = bearer(make_user(make_org("A"), "Root"))
    answer = api.get(f"/api/audit?{name}={quote(value)}", **root)
    assert answer.status_code == 400, answer.content
    assert name in answer.json()["msg"]


@pytest.mark.parametrize("value", EDGES)
@pytest.mark.parametrize("field", ["started_at", "finished_at"])
def test_a_run_time_past_the_datetime_range_is_a_400_and_changes_nothing(api, field, value):
    org = make_org("A")
    collab = make_collab(org)
    node, _ = make_node(org, collab)
    run = make_run(make_task(collab, org), org)
    body = {"status": "completed", "finished_at": "2024-01-01T00:00:00", field: value}
    answer = api.patch(f"/api/run/{run.pk}", body, format="json", **bearer(node))
    assert answer.status_code == 400, answer.content
    assert Run.objects.get(pk=run.pk).status == run.status
