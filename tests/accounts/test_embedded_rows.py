"""Rows embedded in other rows (``include=``) by every combination of the caller's view scopes of the
two resources: the status of the list and of the details, and, whenever they are shown, every embedded
row is one that its own endpoint shows the caller too.

A caller is a user of organization A. The rows: in collaboration AB a task of A started by the caller
and a task of B, each with a run of A and of B; in C a task of C; studies of AB (A and B), and of C.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import bearer, full_page, make_collab, make_org, make_study, make_task, make_user
from tests.tasks.conftest import user_with
from vantage6.api.sql import CompiledList

pytestmark = pytest.mark.django_db

SCOPES = ("glo", "col", "org", "own")
RANK = {"own": 0, "org": 1, "col": 2, "glo": 3}


def _at_least(held: str | None, needed: str) -> bool:
    return held is not None and RANK[held] >= RANK[needed]


def _ok(allowed: bool) -> int:
    return 200 if allowed else 401


# --- what each combination shows, written out from the spec (permissions.md §5, rest-api.md) ---------
def task_runs_expected(task: str, run: str | None) -> dict[str, int]:
    """Runs in tasks: the run rules must reach as far as the task rules (list); a task's runs are judged
    on the task by the run rules (detail)."""
    return {
        "list": _ok(_at_least(run, task)),
        "own task": _ok(run is not None),
        "task of B": _ok(task in ("glo", "col") and run in ("glo", "col")),
    }


def run_task_expected(run: str, task: str | None) -> dict[str, int]:
    """The task of runs: the runs an organization executes include tasks other organizations started
    (list: collaboration scope for organization scope); the task of one run is judged itself."""
    needed = {"glo": "glo", "col": "col", "org": "col", "own": "own"}[run]
    return {
        "list": _ok(_at_least(task, needed)),
        "run of A in B's task": _ok(run in ("glo", "col") and task in ("glo", "col")),
        "run of B in own task": _ok(task is not None),
    }


def collaboration_members_expected(collaboration: str, organization: str | None) -> dict[str, int]:
    """Members of collaborations: as GET /organization?collaboration_id= shows them."""
    return {
        "list": _ok(_at_least(organization, "glo" if collaboration == "glo" else "col")),
        "own collaboration": _ok(_at_least(organization, "col")),
        "collaboration C": _ok(collaboration == "glo" and organization == "glo"),
    }


def study_members_expected(study: str, organization: str | None) -> dict[str, int]:
    """Members of studies: the organizations of the study's collaboration."""
    return {
        "list": _ok(_at_least(organization, "glo" if study == "glo" else "col")),
        "study of AB": _ok(_at_least(organization, "col")),
        "study of C": _ok(study == "glo" and organization == "glo"),
    }


def _rows(world, caller) -> dict:
    ub, uc = make_user(world.org_b), make_user(world.org_c)
    own_task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, init_user=caller)
    task_of_b = make_task(world.collab_ab, world.org_b, world.org_a, world.org_b, init_user=ub)
    make_task(world.collab_c, world.org_c, world.org_c, init_user=uc)
    return {
        "own task": own_task,
        "task of B": task_of_b,
        "run of A in B's task": task_of_b.runs.get(organization=world.org_a),
        "run of B in own task": own_task.runs.get(organization=world.org_b),
        "study of AB": make_study(world.collab_ab, world.org_a, world.org_b),
        "study of C": make_study(world.collab_c, world.org_c),
    }


# parent resource, embedded resource, its view scopes in the catalogue, paths, expectations, where the
# embedded rows are in an answer and the endpoint that shows one of them.
EMBEDDINGS = {
    "task runs": (
        "task", "run", SCOPES,
        {"list": "/api/task?include=runs,results", "own task": "/api/task/{}?include=runs,results",
         "task of B": "/api/task/{}?include=runs,results"},
        task_runs_expected, lambda item: [run["id"] for run in item["runs"]], "/api/run/{}",
    ),
    "run task": (
        "run", "task", SCOPES,
        {"list": "/api/run?include=task", "run of A in B's task": "/api/run/{}?include=task",
         "run of B in own task": "/api/run/{}?include=task"},
        run_task_expected, lambda item: [item["task"]["id"]], "/api/task/{}",
    ),
    "collaboration members": (
        "collaboration", "organization", ("glo", "org"),
        {"list": "/api/collaboration?include=organizations",
         "own collaboration": "/api/collaboration/{}?include=organizations",
         "collaboration C": "/api/collaboration/{}?include=organizations"},
        collaboration_members_expected, lambda item: [org["id"] for org in item["organizations"]],
        "/api/organization/{}",
    ),
    "study members": (
        "study", "organization", ("glo", "col", "org"),
        {"list": "/api/study?include=organizations", "study of AB": "/api/study/{}?include=organizations",
         "study of C": "/api/study/{}?include=organizations"},
        study_members_expected, lambda item: [org["id"] for org in item["organizations"]],
        "/api/organization/{}",
    ),
}  # fmt: skip
EMBEDDED_SCOPES = {"run": SCOPES, "task": SCOPES, "organization": ("glo", "col", "org")}


def _cases():
    for name, (_, embedded, parent_scopes, *_) in EMBEDDINGS.items():
        for parent_scope in parent_scopes:
            for embedded_scope in (*EMBEDDED_SCOPES[embedded], None):
                yield pytest.param(
                    name, parent_scope, embedded_scope, id=f"{name}-{parent_scope}-{embedded_scope}"
                )


@pytest.mark.parametrize("embedding, parent_scope, embedded_scope", list(_cases()))
def test_embedded_rows_are_within_the_callers_view_of_them(
    api, world, embedding, parent_scope, embedded_scope
):
    parent, embedded, _, paths, expected_of, embedded_ids, own_endpoint = EMBEDDINGS[embedding]
    held = [f"{parent}.{parent_scope}.view"] + (
        [f"{embedded}.{embedded_scope}.view"] if embedded_scope else []
    )
    caller = user_with(world.org_a, *held)
    rows = _rows(world, caller)
    rows.update({"own collaboration": world.collab_ab, "collaboration C": world.collab_c})
    headers = bearer(caller)
    for target, expected in expected_of(parent_scope, embedded_scope).items():
        path = paths[target].format(rows[target].pk if target != "list" else "")
        response = api.get(path, **headers)
        assert response.status_code == expected, (target, response.content)
        if expected != 200:
            continue
        items = response.json()["data"] if target == "list" else [response.json()]
        shown = {pk for item in items for pk in embedded_ids(item)}
        assert shown or target == "list"
        for pk in shown:  # each one is the caller's to see on its own
            assert api.get(own_endpoint.format(pk), **headers).status_code == 200, (target, pk)


# --- an organization that left a collaboration --------------------------------------------------------
# Its runs and the tasks it started there stay its own (organization scope), but they are no longer in
# its collaborations (collaboration scope): the two scopes no longer nest, and a list with embedded rows
# shows no row whose embedded rows the embedded resource's own endpoints refuse.
def _leave(api, world, organization, collaboration) -> None:
    root = bearer(make_user(world.org_c, "Root"))
    path = f"/api/collaboration/{collaboration.pk}/organization"
    assert api.delete(path, {"id": organization.pk}, format="json", **root).status_code == 200


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {item["id"] for item in response.json()["data"]}


def test_a_task_started_before_leaving_shows_no_runs_its_run_rules_no_longer_reach(api, world):
    headers = bearer(user_with(world.org_a, "task.org.view", "run.col.view"))
    task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    task.runs.filter(organization=world.org_b).update(log="the log of B's run")
    _leave(api, world, world.org_a, world.collab_ab)
    assert task.pk in _ids(api.get("/api/task", **headers))  # still a task of A
    assert api.get(f"/api/run?task_id={task.pk}", **headers).status_code == 401
    assert api.get(f"/api/task/{task.pk}?include=runs", **headers).status_code == 401
    response = api.get("/api/task?include=runs,results", **headers)
    assert task.pk not in _ids(response)
    assert "the log of B's run" not in response.content.decode()


def test_a_run_executed_before_leaving_shows_no_task_its_task_rules_no_longer_reach(api, world):
    headers = bearer(user_with(world.org_a, "task.col.view", "run.org.view"))
    task = make_task(world.collab_ab, world.org_b, world.org_a, world.org_b, description="B's task is about")
    run = task.runs.get(organization=world.org_a)
    _leave(api, world, world.org_a, world.collab_ab)
    assert run.pk in _ids(api.get("/api/run", **headers))  # still a run of A
    assert api.get(f"/api/task/{task.pk}", **headers).status_code == 401
    assert api.get(f"/api/run/{run.pk}?include=task", **headers).status_code == 401
    response = api.get("/api/run?include=task", **headers)
    assert run.pk not in _ids(response)
    assert "B's task is about" not in response.content.decode()


# A list narrowed to the rows whose embedded rows are in reach: the same queries as any list with them,
# its SQL compiled as theirs is.
NARROWED = {
    "task list": ("/api/task?include=runs,results", ("task.org.view", "run.col.view"), 7),
    "run list": ("/api/run?include=task", ("task.col.view", "run.org.view"), 5),
}


@pytest.mark.parametrize("path, held, queries", NARROWED.values(), ids=list(NARROWED))
def test_a_narrowed_list_costs_no_query_more_and_answers_as_the_orm(
    api, world, monkeypatch, path, held, queries
):
    headers = bearer(user_with(world.org_a, *held))
    org_d = make_org("D")
    collab_ad = make_collab(world.org_a, org_d, name="AD")
    for collab, other in ((world.collab_ab, world.org_b), (collab_ad, org_d)):
        for _ in range(2):
            make_task(collab, world.org_a, world.org_a, other)
            make_task(collab, other, world.org_a, other)
    _leave(api, world, world.org_a, world.collab_ab)
    page = full_page(api, path, headers)
    assert _ids(api.get(page, **headers))
    api.get(page, **headers)  # warm-up: last_seen, the compiled plan
    with CaptureQueriesContext(connection) as context:
        compiled = api.get(page, **headers)
    assert len(context.captured_queries) == queries
    monkeypatch.setattr(CompiledList, "plan", lambda *_: None)  # the ORM's way
    assert api.get(page, **headers).content == compiled.content
