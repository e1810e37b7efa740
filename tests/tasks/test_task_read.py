"""Reading tasks: scoping per role scope, nodes and containers; filters; includes; derived status."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from collaborations.models import AlgorithmStore
from tasks.models import Run, TaskDatabase
from tests.factories import bearer, full_page, make_run, make_study, make_task, make_user
from tests.tasks.conftest import container_identity, rules, user_with

pytestmark = pytest.mark.django_db


@dataclass
class Tasks:
    ab_a: object  # in AB, created by user ua of A, runs at A and B
    ab_b: object  # in AB, created by a user of B, runs at A and B
    c: object  # in C, created by C, run at C
    ua: object


@pytest.fixture
def tasks(world) -> Tasks:
    ua, ub, uc = make_user(world.org_a), make_user(world.org_b), make_user(world.org_c)
    ab_a = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, init_user=ua, name="alpha")
    ab_b = make_task(world.collab_ab, world.org_b, world.org_a, world.org_b, init_user=ub, name="beta")
    c = make_task(world.collab_c, world.org_c, world.org_c, init_user=uc, name="gamma")
    return Tasks(ab_a, ab_b, c, ua)


def caller(kind: str, world, tasks: Tasks):
    """Headers of one kind of caller (user scopes, nodes, a container of task ab_a)."""
    users = {
        "glo": lambda: user_with(world.org_c, "task.glo.view", "run.glo.view"),
        "col": lambda: user_with(world.org_a, "task.col.view", "run.col.view"),
        "org": lambda: user_with(world.org_a, "task.org.view", "run.org.view"),
        "own": lambda: tasks.ua.rules.add(*rules("task.own.view", "run.own.view")) or tasks.ua,
        "own-other": lambda: user_with(world.org_a, "task.own.view", "run.own.view"),
        "none": lambda: make_user(world.org_a),
        "node_a": lambda: world.node_a,
        "node_c": lambda: world.node_c,
        "container": lambda: container_identity(tasks.ab_a, world.node_b),
    }
    return bearer(users[kind]())


TASK_VISIBILITY = {
    "glo": {"ab_a", "ab_b", "c"},
    "col": {"ab_a", "ab_b"},
    "org": {"ab_a"},
    "own": {"ab_a"},
    "own-other": set(),
    "node_a": {"ab_a", "ab_b"},
    "node_c": {"c"},
    "container": {"ab_a"},  # its own job alone (README: deviations)
}


@pytest.mark.parametrize("kind", sorted(TASK_VISIBILITY))
def test_task_list_and_get_follow_the_scope(api, world, tasks, kind):
    headers = caller(kind, world, tasks)
    names = {getattr(tasks, key).pk: key for key in ("ab_a", "ab_b", "c")}
    listed = api.get("/api/task?per_page=50", **headers)
    assert listed.status_code == 200
    assert {names[item["id"]] for item in listed.json()["data"]} == TASK_VISIBILITY[kind]
    for key, pk in ((key, getattr(tasks, key).pk) for key in names.values()):
        expected = 200 if key in TASK_VISIBILITY[kind] else 401
        assert api.get(f"/api/task/{pk}", **headers).status_code == expected, key


def test_task_list_without_any_view_rule_is_401(api, world, tasks):
    assert api.get("/api/task", **caller("none", world, tasks)).status_code == 401


def test_task_status_endpoint_for_users_and_containers_not_nodes(api, world, tasks):
    url = f"/api/task/{tasks.ab_a.pk}/status"
    assert api.get(url, **caller("col", world, tasks)).json() == {"status": "pending"}
    assert api.get(url, **caller("container", world, tasks)).json() == {"status": "pending"}
    assert api.get(url, **bearer(world.node_a)).status_code == 401
    assert api.get(f"/api/task/{tasks.c.pk}/status", **caller("container", world, tasks)).status_code == 401
    assert api.get("/api/task/99999/status", **caller("glo", world, tasks)).status_code == 404


# --- derived status ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statuses, expected",
    [
        ([], "completed"),
        (["pending", "pending"], "pending"),
        (["pending", "initializing"], "initializing"),
        (["initializing", "active", "completed"], "active"),
        (["completed", "completed"], "completed"),
        (["completed", "crashed"], "crashed"),
        (["crashed", "crashed", "active"], "crashed"),
        (["crashed", "killed by user"], "failed"),
        (["not allowed", "pending"], "not allowed"),
    ],
)
def test_task_status_is_derived_from_its_runs(api, world, statuses, expected):
    from datetime import datetime

    task = make_task(world.collab_ab, world.org_a)
    for i, status in enumerate(statuses):
        finished = datetime(2024, 1, 1, 10, i) if status == "completed" else None
        make_run(task, world.org_a if i % 2 else world.org_b, status=status, finished_at=finished)
    viewer = user_with(world.org_a, "task.col.view")
    detail = api.get(f"/api/task/{task.pk}", **bearer(viewer)).json()
    assert detail["status"] == expected
    expected_end = f"2024-01-01T10:0{len(statuses) - 1}:00" if expected == "completed" and statuses else None
    assert detail["finished_at"] == expected_end
    listed = api.get(f"/api/task?status={expected}", **bearer(viewer)).json()["data"]
    assert [item["id"] for item in listed] == [task.pk]
    assert [i["status"] for i in api.get("/api/task", **bearer(viewer)).json()["data"]] == [expected]


# --- filters -------------------------------------------------------------------------------------------
def test_task_filters(api, world, tasks):
    store = AlgorithmStore.objects.create(name="s", url="http://s/api")
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    child = make_task(
        world.collab_ab, world.org_b, world.org_a, parent=tasks.ab_a, init_user=tasks.ua,
        name="alpha-child", study=study, algorithm_store=store, description="the child",
    )  # fmt: skip
    TaskDatabase.objects.create(task=tasks.ab_b, database="lab", parameters="{}")
    run_of_b = tasks.ab_b.runs.first()
    glo = caller("glo", world, tasks)

    def ids(query):
        response = api.get(f"/api/task?per_page=50&{query}", **glo)
        assert response.status_code == 200, response.json()
        return {item["id"] for item in response.json()["data"]}

    assert ids(f"collaboration_id={world.collab_c.pk}") == {tasks.c.pk}
    assert ids(f"init_org_id={world.org_b.pk}") == {tasks.ab_b.pk, child.pk}
    assert ids(f"init_user_id={tasks.ua.pk}") == {tasks.ab_a.pk, child.pk}
    assert ids(f"study_id={study.pk}") == {child.pk}
    assert ids(f"parent_id={tasks.ab_a.pk}") == {child.pk}
    assert ids(f"job_id={tasks.ab_a.job_id}") == {tasks.ab_a.pk, child.pk}
    assert ids("name=alpha%") == {tasks.ab_a.pk, child.pk}
    assert ids("name=alph_") == {tasks.ab_a.pk}
    assert ids("description=the%") == {child.pk}
    assert ids("image=some/image") == {tasks.ab_a.pk, tasks.ab_b.pk, tasks.c.pk, child.pk}
    assert ids("database=lab") == {tasks.ab_b.pk}
    assert ids("is_user_created=0") == {child.pk}
    assert ids("is_user_created=1") == {tasks.ab_a.pk, tasks.ab_b.pk, tasks.c.pk}
    assert ids(f"store_id={store.pk}") == {child.pk}
    assert ids(f"run_id={run_of_b.pk}") == {tasks.ab_b.pk}
    assert ids("status=pending") == {tasks.ab_a.pk, tasks.ab_b.pk, tasks.c.pk, child.pk}
    assert ids("status=completed") == set()

    bad_queries = (
        "init_user_id=99999", "study_id=99999", "parent_id=99999", "job_id=99999", "store_id=99999",
        "run_id=99999", "is_user_created=x", "collaboration_id=abc", "page=0", "sort=nope",
    )  # fmt: skip
    for bad in bad_queries:
        assert api.get(f"/api/task?{bad}", **glo).status_code == 400, bad


def test_task_filters_outside_the_callers_reach_are_401(api, world, tasks):
    col = caller("col", world, tasks)
    for query in (
        f"collaboration_id={world.collab_c.pk}",
        f"init_org_id={world.org_c.pk}",
        f"init_user_id={tasks.c.init_user_id}",
        f"parent_id={tasks.c.pk}",
        f"job_id={tasks.c.job_id}",
        f"run_id={tasks.c.runs.first().pk}",
    ):
        assert api.get(f"/api/task?{query}", **col).status_code == 401, query


def test_the_init_user_filter_reaches_the_callers_own_tasks_at_own_scope(api, world, tasks):
    own = caller("own", world, tasks)  # the user who started ab_a, with the own-scope rules
    response = api.get(f"/api/task?init_user_id={tasks.ua.pk}", **own)
    assert response.status_code == 200
    assert {item["id"] for item in response.json()["data"]} == {tasks.ab_a.pk}
    colleague = make_user(world.org_a)
    assert api.get(f"/api/task?init_user_id={colleague.pk}", **own).status_code == 401


def test_task_list_sort_is_honoured_and_defaults_to_newest_first(api, world, tasks):
    glo = caller("glo", world, tasks)
    default = [item["id"] for item in api.get("/api/task", **glo).json()["data"]]
    assert default == sorted(default, reverse=True)
    by_name = [item["name"] for item in api.get("/api/task?sort=name", **glo).json()["data"]]
    assert by_name == ["alpha", "beta", "gamma"]


# --- includes ------------------------------------------------------------------------------------------
def test_include_runs_and_results(api, world, tasks):
    col = caller("col", world, tasks)
    Run.objects.filter(task=tasks.ab_a, organization=world.org_b).update(
        result="cmVzdWx0", status="completed"
    )
    detail = api.get(f"/api/task/{tasks.ab_a.pk}?include=runs&include=results", **col).json()
    assert {run["organization"]["id"] for run in detail["runs"]} == {world.org_a.pk, world.org_b.pk}
    assert {run["node"]["name"] for run in detail["runs"]} == {"node-a", "node-b"}
    assert {result["result"] for result in detail["results"]} == {None, "cmVzdWx0"}
    assert "result" not in detail["runs"][0]
    listed = api.get("/api/task?include=runs,results", **col).json()["data"]
    assert all(isinstance(item["runs"], list) and isinstance(item["results"], list) for item in listed)


def test_include_results_needs_run_view_at_least_as_broad_as_task_view(api, world, tasks):
    narrow = user_with(world.org_a, "task.col.view", "run.org.view")
    assert api.get("/api/task?include=results", **bearer(narrow)).status_code == 401
    assert api.get("/api/task?include=runs", **bearer(narrow)).status_code == 401
    assert api.get(f"/api/task/{tasks.ab_b.pk}?include=results", **bearer(narrow)).status_code == 401
    assert api.get(f"/api/task/{tasks.ab_a.pk}?include=results", **bearer(narrow)).status_code == 200


def test_embedded_runs_are_judged_by_the_run_rules(api, world, tasks):
    """Runs embedded in a task show their input and log: a user whose run rules do not reach B's run of a
    task gets neither through ``include=runs`` (GET /run refuses it the same run)."""
    Run.objects.filter(task=tasks.ab_b, organization=world.org_b).update(log="the log of B's run")
    for rules_held in (("task.col.view", "run.org.view"), ("task.col.view",)):
        headers = bearer(user_with(world.org_a, *rules_held))
        assert api.get(f"/api/run?task_id={tasks.ab_b.pk}", **headers).status_code == 401
        for path in (f"/api/task/{tasks.ab_b.pk}?include=runs", "/api/task?include=runs"):
            response = api.get(path, **headers)
            assert response.status_code == 401, (rules_held, path)
            assert "the log of B" not in response.content.decode()


# --- query counts --------------------------------------------------------------------------------------
# Each request costs 1 query for the caller (identity with its rules and collaborations), then the list;
# a page of more than 10 rows with large fields (runs, results, tasks with them) 1 for its largest row.
def _count_queries(api, url, headers) -> int:
    api.get(url, **headers)  # warm-up: last_seen and caches
    with CaptureQueriesContext(connection) as context:
        response = api.get(url, **headers)
    assert response.status_code == 200
    return len(context.captured_queries)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("/api/task", 3),
        ("/api/task?include=runs,results", 8),
        ("/api/run", 5),
        ("/api/run?include=task", 6),
        ("/api/result", 3),
    ],
)
def test_list_query_counts_do_not_grow_with_rows(api, world, url, expected):
    viewer = user_with(world.org_a, "task.col.view", "run.col.view")
    headers = bearer(viewer)
    for _ in range(12):  # full_page: a page (of more than 10 rows) that another row follows
        make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    few = _count_queries(api, full_page(api, url, headers), headers)
    for _ in range(6):
        task = make_task(world.collab_ab, world.org_b, world.org_a, world.org_b)
        TaskDatabase.objects.create(task=task, database="default", parameters="{}")
    many = _count_queries(api, full_page(api, url, headers), headers)
    assert few == many == expected


def test_detail_query_counts(api, world, tasks):
    headers = caller("col", world, tasks)
    assert _count_queries(api, f"/api/task/{tasks.ab_a.pk}?include=runs,results", headers) == 6
    assert _count_queries(api, f"/api/run/{tasks.ab_a.runs.first().pk}?include=task", headers) == 5


def test_an_embedded_task_is_judged_by_the_task_rules(api, world, tasks):
    """The runs A executes are listed to a user of A with the organization's run rule, also those of a task
    B started: with ``include=task`` that task is shown too, which its task rules (only the tasks A
    started; GET /task/<id> refuses it B's) do not reach."""
    tasks.ab_b.description = "what B's task is about"
    tasks.ab_b.save(update_fields=["description"])
    headers = bearer(user_with(world.org_a, "task.org.view", "run.org.view"))
    assert api.get(f"/api/task/{tasks.ab_b.pk}", **headers).status_code in (401, 404)
    listed = api.get(f"/api/run?organization_id={world.org_a.pk}", **headers).json()["data"]
    assert tasks.ab_b.pk in {run["task"]["id"] for run in listed}  # the run itself is A's
    response = api.get("/api/run?include=task", **headers)
    assert response.status_code == 401
    assert "what B's task is about" not in response.content.decode()
    wider = bearer(user_with(world.org_a, "task.col.view", "run.org.view"))
    response = api.get("/api/run?include=task", **wider)
    assert response.status_code == 200
    assert "what B's task is about" in response.content.decode()
    run = Run.objects.get(task=tasks.ab_a, organization=world.org_a)
    assert api.get(f"/api/run/{run.pk}?include=task", **headers).status_code == 200  # A's task
