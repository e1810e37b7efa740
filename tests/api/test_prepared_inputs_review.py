"""The statements prepared once per connection (the run a node writes, a kill's lock and update, a task's
and a run's lookup) given identifiers of unusual types and sizes, first (PREPARE) and again (by name):
a 4xx, never a 500, and the connection serves the next request (on SQLite too, without them)."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task, make_user

pytestmark = pytest.mark.usefixtures("transactional_db")

NUMBERS = [0, -1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**70]
# A padded number no task has (a small one could be a task another test left in a file database).
VALUES = [*NUMBERS, "abc", "1e3", f" {2**31 - 1} ", 1.5, 1e308, True, None, [1], {"id": 1}, ""]


@pytest.fixture
def world():
    org = make_org("A")
    collab = make_collab(org)
    node, _ = make_node(org, collab)
    task = make_task(collab, org)
    return {"node": bearer(node), "root": bearer(make_user(org, "Root")), "run": make_run(task, org)}


def test_odd_identifiers_in_paths_are_answered_without_error(api, world):
    for _ in range(2):  # prepared with the first use, run by name with the second
        for number in NUMBERS:
            patched = api.patch(f"/api/run/{number}", {"status": "active"}, format="json", **world["node"])
            # A run of no id is to a node what another organization's is (the 401), the id is refused (400),
            # or it matches no route (a negative one: 404).
            assert patched.status_code in (400, 401, 404), (number, patched.content)
            for path in (f"/api/task/{number}", f"/api/run/{number}"):
                answer = api.get(path, **world["root"])
                assert answer.status_code in (400, 404), (path, answer.content)
    mine = api.patch(f"/api/run/{world['run'].pk}", {"status": "active"}, format="json", **world["node"])
    assert mine.status_code == 200, mine.content


def test_odd_identifiers_of_a_kill_are_answered_without_error(api, world):
    for _ in range(2):
        for value in VALUES:
            answer = api.post("/api/kill/task", {"id": value}, format="json", **world["root"])
            assert answer.status_code in (400, 404), (value, answer.content)
    killed = api.post("/api/kill/task", {"id": world["run"].task_id}, format="json", **world["root"])
    assert killed.status_code == 200, killed.content
