"""Runs and results: scoping, filters, the node's PATCH, ports, and container tokens."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from accounts.models import AuditEntry, Rule
from accounts.tokens import decode
from tasks.models import AlgorithmPort, Run, TaskDatabase
from tests.factories import (
    bearer,
    make_collab,
    make_node,
    make_org,
    make_run,
    make_task,
    make_user,
    store_status,
)
from tests.tasks.conftest import container_identity, rules, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(world):
    """Task t (AB, by A) with runs ra (A) and rb (B); task u (C) with run rc (C)."""
    creator = make_user(world.org_a)
    t = make_task(world.collab_ab, world.org_a, init_user=creator)
    ra, rb = make_run(t, world.org_a), make_run(t, world.org_b)
    u = make_task(world.collab_c, world.org_c)
    rc = make_run(u, world.org_c)
    return {"t": t, "ra": ra, "rb": rb, "u": u, "rc": rc, "creator": creator}


RUN_VISIBILITY = {
    "glo": {"ra", "rb", "rc"},
    "col": {"ra", "rb"},
    "org": {"ra"},  # the list shows runs executed by the caller's organization
    "own": {"ra", "rb"},
    "node_a": {"ra", "rb"},
    "node_c": {"rc"},
    "container": {"ra", "rb"},
}
# A single run is judged on its task (init_org, collaboration), as vantage6 does.
RUN_DETAIL = {**RUN_VISIBILITY, "org": {"ra", "rb"}}


def _headers(kind, world, runs):
    callers = {
        "glo": lambda: user_with(world.org_c, "run.glo.view"),
        "col": lambda: user_with(world.org_a, "run.col.view"),
        "org": lambda: user_with(world.org_a, "run.org.view"),
        "own": lambda: runs["creator"].rules.add(*rules("run.own.view")) or runs["creator"],
        "node_a": lambda: world.node_a,
        "node_c": lambda: world.node_c,
        "container": lambda: container_identity(runs["t"], world.node_a),
    }  # fmt: skip
    return bearer(callers[kind]())


@pytest.mark.parametrize("resource", ["run", "result"])
@pytest.mark.parametrize("kind", sorted(RUN_VISIBILITY))
def test_run_and_result_scoping(api, world, runs, kind, resource):
    headers = _headers(kind, world, runs)
    names = {runs[key].pk: key for key in ("ra", "rb", "rc")}
    listed = api.get(f"/api/{resource}", **headers)
    assert listed.status_code == 200
    assert {names[item["id"]] for item in listed.json()["data"]} == RUN_VISIBILITY[kind]
    for pk, key in names.items():
        expected = 200 if key in RUN_DETAIL[kind] else 401
        assert api.get(f"/api/{resource}/{pk}", **headers).status_code == expected, key


def test_run_list_without_rule_is_401_and_unknown_run_is_404_to_global_viewers(api, world):
    nobody = make_user(world.org_a)
    assert api.get("/api/run", **bearer(nobody)).status_code == 401
    glo = bearer(
        make_user(world.org_c, rules=Rule.objects.filter(name="run", scope="GLOBAL", operation="VIEW"))
    )
    for path in ("run", "result"):
        assert api.get(f"/api/{path}/99999", **glo).status_code == 404
        # to a node an unknown run is as one out of its reach
        assert api.get(f"/api/{path}/99999", **bearer(world.node_a)).status_code == 401


def test_run_representation(api, world, runs):
    AlgorithmPort.objects.create(run=runs["ra"], port=8888, label="api")
    TaskDatabase.objects.create(task=runs["t"], database="default", parameters='{"query":"q"}')
    data = api.get(f"/api/run/{runs['ra'].pk}?include=task", **bearer(world.node_a)).json()
    assert data["node"] == {"id": world.node_a.pk, "ip": None, "status": "offline", "name": "node-a"}
    assert data["ports"] == [{"id": AlgorithmPort.objects.get().pk, "port": 8888, "label": "api"}]
    assert data["results"] == {
        "id": runs["ra"].pk,
        "link": f"/api/result/{runs['ra'].pk}",
        "methods": ["GET", "PATCH"],
    }
    assert "result" not in data
    task = data["task"]
    assert task["id"] == runs["t"].pk and "runs" not in task and task["status"] == "pending"
    assert task["databases"] == [{"label": "default", "parameters": '{"query":"q"}'}]
    plain = api.get(f"/api/run/{runs['ra'].pk}?include=x", **bearer(world.node_a)).json()
    assert plain["task"] == {
        "id": runs["t"].pk,
        "link": f"/api/task/{runs['t'].pk}",
        "methods": ["GET", "DELETE"],
    }
    result = api.get(f"/api/result/{runs['ra'].pk}", **bearer(world.node_a)).json()
    assert set(result) == {"id", "result", "cleanup_at", "blob_storage_used", "run", "task"}


@pytest.mark.parametrize("include", ["task,x", "x,task", "x&include=task", "task&include=x"])
def test_run_include_is_read_as_the_lists_read_it(api, world, runs, include):
    """Every ``include`` value counts, repeated or comma-separated, for one run as for the list."""
    headers = bearer(world.node_a)
    one = api.get(f"/api/run/{runs['ra'].pk}?include={include}", **headers).json()
    listed = api.get(f"/api/run?task_id={runs['t'].pk}&include={include}", **headers).json()["data"]
    assert one["task"]["id"] == runs["t"].pk and "init_org" in one["task"]
    assert [run["task"] for run in listed if run["id"] == runs["ra"].pk] == [one["task"]]


def test_run_filters(api, world, runs):
    glo = bearer(user_with(world.org_c, "run.glo.view"))
    Run.objects.filter(pk=runs["ra"].pk).update(
        assigned_at=datetime(2024, 1, 1), started_at=datetime(2024, 2, 1), finished_at=datetime(2024, 3, 1),
        status="completed",
    )  # fmt: skip
    AlgorithmPort.objects.create(run=runs["rb"], port=7000)

    def ids(query):
        response = api.get(f"/api/run?{query}", **glo)
        assert response.status_code == 200, response.json()
        return {item["id"] for item in response.json()["data"]}

    ra, rb, rc = runs["ra"].pk, runs["rb"].pk, runs["rc"].pk
    assert ids(f"task_id={runs['t'].pk}") == {ra, rb}
    assert ids(f"organization_id={world.org_b.pk}") == {rb}
    assert ids(f"node_id={world.node_a.pk}") == {ra}
    assert ids(f"collaboration_id={world.collab_c.pk}") == {rc}
    assert ids("state=open") == {rb, rc}
    assert ids("assigned_till=2024-01-02") == {ra}
    assert ids("assigned_from=2024-01-02") == {rb, rc}
    assert ids("started_from=2024-01-15T00:00:00") == {ra}
    assert ids("started_till=2024-01-15") == set()
    assert ids("finished_from=2024-02-15&finished_till=2024-03-02T00:00:00%2B00:00") == {ra}
    assert ids("port=7000") == {rb}
    for bad in ("task_id=99999", "node_id=99999", "started_from=yesterday", "port=x", "sort=unknown"):
        assert api.get(f"/api/run?{bad}", **glo).status_code == 400, bad
    assert api.get("/api/run?sort=status", **glo).status_code == 200


def test_node_id_means_the_nodes_organization_in_the_nodes_collaboration(api, world):
    """An organization in two collaborations: its node of AB never sees its runs of the other."""
    other = make_collab(world.org_a, world.org_c, name="AC")
    node_a_ac, _ = make_node(world.org_a, other, "node-a-ac")
    in_ab = make_task(world.collab_ab, world.org_b, world.org_a)
    in_ac = make_task(other, world.org_c, world.org_a)
    rows = api.get(
        f"/api/run?state=open&node_id={world.node_a.pk}&include=task", **bearer(world.node_a)
    ).json()
    assert [row["task"]["id"] for row in rows["data"]] == [in_ab.pk]
    rows = api.get(f"/api/run?node_id={node_a_ac.pk}", **bearer(node_a_ac)).json()["data"]
    assert [row["task"]["id"] for row in rows] == [in_ac.pk]


def test_runs_of_organizations_without_a_node_are_listed(api, world):
    org_d = make_org("D")
    world.collab_ab.organizations.add(org_d)
    task = make_task(world.collab_ab, world.org_a, org_d)
    rows = api.get(f"/api/run?task_id={task.pk}", **bearer(user_with(world.org_a, "run.col.view"))).json()[
        "data"
    ]
    assert len(rows) == 1 and rows[0]["node"] is None


def test_run_filters_outside_reach_are_401(api, world, runs):
    col = bearer(user_with(world.org_a, "run.col.view"))
    queries = (
        f"task_id={runs['u'].pk}", f"node_id={world.node_c.pk}", f"collaboration_id={world.collab_c.pk}",
        f"organization_id={world.org_c.pk}",
    )  # fmt: skip
    for query in queries:
        assert api.get(f"/api/run?{query}", **col).status_code == 401, query


# --- PATCH /run/<id> -----------------------------------------------------------------------------------
def patch(api, node, run, body):
    return api.patch(f"/api/run/{run.pk}", body, format="json", **bearer(node))


def test_patch_sets_fields_and_clears_absent_ones(
    api, world, runs, events, django_capture_on_commit_callbacks
):
    ra = runs["ra"]
    Run.objects.filter(pk=ra.pk).update(log="old log", result="old")
    with django_capture_on_commit_callbacks(execute=True):
        response = patch(
            api, world.node_a, ra, {"started_at": "2024-05-01T12:00:00.123456+02:00", "status": "active"}
        )
    assert response.status_code == 200, response.json()
    assert response.json()["started_at"] == "2024-05-01T10:00:00.123456"
    assert response.json()["status"] == "active"
    ra.refresh_from_db()
    assert ra.log is None and ra.result is None and ra.finished_at is None
    assert events == [("status_update", {"run_id": ra.pk}, f"collaboration_{world.collab_ab.pk}")]

    response = patch(api, world.node_a, ra, {"result": "cmVz", "log": "done", "status": "completed",
                                             "finished_at": "2024-05-01T12:30:00Z"})  # fmt: skip
    assert response.status_code == 200
    ra.refresh_from_db()
    assert (ra.result, ra.log, ra.status) == ("cmVz", "done", "completed")
    assert ra.started_at == datetime(2024, 5, 1, 10, 0, 0, 123456)
    assert ra.finished_at == datetime(2024, 5, 1, 12, 30)


def test_finished_runs_never_change_again(api, world, runs):
    ra = runs["ra"]
    assert (
        patch(api, world.node_a, ra, {"status": "completed", "finished_at": "2024-01-01"}).status_code == 200
    )
    response = patch(api, world.node_a, ra, {"status": "active"})
    assert response.status_code == 400
    assert response.json() == {"msg": "Cannot update an already finished algorithm run!"}
    assert Run.objects.get(pk=ra.pk).status == "completed"


@pytest.mark.parametrize("late", ["completed", "failed", "active"])
def test_a_final_status_without_finished_at_takes_the_nodes_late_report(api, world, runs, late):
    """Only finished_at freezes a run: a node that reported a final status without it may still report."""
    rb = runs["rb"]
    assert patch(api, world.node_b, rb, {"status": "killed by user"}).status_code == 200
    response = patch(
        api, world.node_b, rb, {"status": late, "log": "late", "result": "cmVz", "finished_at": "2024-01-01"}
    )
    assert response.status_code == 200, response.json()
    rb.refresh_from_db()
    assert (rb.status, rb.log, rb.result, rb.finished_at) == (late, "late", "cmVz", datetime(2024, 1, 1))


def test_a_failure_fails_the_siblings_that_did_not_start(api, world, runs):
    t = runs["t"]
    started = make_run(t, world.org_b, status="active", started_at=datetime(2024, 1, 1))
    waiting = make_run(t, world.org_b, log="")
    response = patch(
        api, world.node_a, runs["ra"], {"status": "crashed", "finished_at": "2024-01-02T00:00:00"}
    )
    assert response.status_code == 200
    statuses = dict(Run.objects.filter(task=t).values_list("id", "status"))
    assert statuses[runs["rb"].pk] == statuses[waiting.pk] == "failed"
    assert statuses[started.pk] == "active"
    for pk in (runs["rb"].pk, waiting.pk):
        sibling = Run.objects.get(pk=pk)
        assert sibling.finished_at is not None and "crashed" in sibling.log
    assert Run.objects.get(pk=runs["rc"].pk).status == "pending"
    status = api.get(f"/api/task/{t.pk}", **bearer(world.node_a)).json()["status"]
    assert status == "failed"  # crashed and failed differ


@pytest.mark.parametrize(
    "who, status",
    [("node_b", 401), ("node_c", 401), ("user", 401), ("container", 401)],
)
def test_only_the_node_of_the_runs_organization_may_patch(api, world, runs, who, status):
    caller = {
        "node_b": lambda: world.node_b,
        "node_c": lambda: world.node_c,
        "user": lambda: make_user(world.org_a, "Root"),
        "container": lambda: container_identity(runs["t"], world.node_a),
    }[who]()
    response = api.patch(f"/api/run/{runs['ra'].pk}", {"status": "active"}, format="json", **bearer(caller))
    assert response.status_code == status
    assert Run.objects.get(pk=runs["ra"].pk).status == "pending"


def test_a_node_cannot_patch_its_organizations_run_in_another_collaboration(api, world):
    """The node of A in AB must not write the status, result or log of A's run in A's other
    collaboration, nor trigger the fail-fast of that task's other runs."""
    other = make_collab(world.org_a, world.org_c, name="AC")
    make_node(world.org_a, other, "node-a-ac")
    task = make_task(other, world.org_c)
    mine, theirs = make_run(task, world.org_a), make_run(task, world.org_c)
    body = {"status": "crashed", "result": "forged", "log": "forged", "finished_at": "2024-01-01T00:00:00"}
    response = api.patch(f"/api/run/{mine.pk}", body, format="json", **bearer(world.node_a))
    assert response.status_code == 401
    assert response.json() == {"msg": "This is not your algorithm run to update!"}
    for run in (mine, theirs):
        run.refresh_from_db()
        assert (run.status, run.result, run.log, run.finished_at) == ("pending", None, None, None)


@pytest.mark.parametrize(
    "body",
    [{"status": "nope"}, {"unknown": 1}, {"started_at": "yesterday"}, {"started_at": 5}, {"log": 5}, [], "x"],
)
def test_patch_validation(api, world, runs, body):
    response = api.patch(f"/api/run/{runs['ra'].pk}", body, format="json", **bearer(world.node_a))
    assert response.status_code == 400
    assert Run.objects.get(pk=runs["ra"].pk).status == "pending"


def test_patch_unknown_run_is_answered_as_anothers(api, world):
    # A node views no run beyond its own: an id of none gets the 401 of another organization's run.
    response = api.patch("/api/run/99999", {}, format="json", **bearer(world.node_a))
    assert response.status_code == 401
    assert response.json() == {"msg": "This is not your algorithm run to update!"}


# --- ports ---------------------------------------------------------------------------------------------
def test_ports_are_managed_by_the_node_of_the_run(api, world, runs):
    body = {"port": 8080, "run_id": runs["ra"].pk, "label": "api"}
    assert api.post("/api/port", body, format="json", **bearer(world.node_b)).status_code == 401
    assert (
        api.post("/api/port", body, format="json", **bearer(make_user(world.org_a, "Root"))).status_code
        == 401
    )
    assert not AlgorithmPort.objects.exists()
    response = api.post("/api/port", body, format="json", **bearer(world.node_a))
    assert response.status_code == 201
    assert response.content == b'{"id":%d,"port":8080,"label":"api"}' % AlgorithmPort.objects.get().pk
    entry = AuditEntry.objects.filter(action="port.create").get()
    assert (
        entry.actor_type,
        entry.actor_id,
        entry.actor_organization_id,
        entry.object_type,
        entry.object_id,
        entry.object_organization_id,
        entry.data,
    ) == ("node", world.node_a.pk, world.org_a.pk, "algorithmport", response.json()["id"], None, {})
    assert entry.created_at is not None
    for bad in (
        {"port": 0, "run_id": runs["ra"].pk},
        {"port": 70000, "run_id": 1},
        {"port": "x", "run_id": 1},
        [],
    ):
        assert api.post("/api/port", bad, format="json", **bearer(world.node_a)).status_code == 400
    assert (
        api.post("/api/port", {"port": 1, "run_id": 99999}, format="json", **bearer(world.node_a)).status_code
        == 401  # as a run out of reach
    )
    assert api.delete("/api/port", **bearer(world.node_a)).status_code == 400
    assert api.delete(f"/api/port?run_id={runs['ra'].pk}", **bearer(world.node_b)).status_code == 401
    response = api.delete(f"/api/port?run_id={runs['ra'].pk}", **bearer(world.node_a))
    assert response.json() == {"msg": "Ports removed from the database."}
    assert AlgorithmPort.objects.count() == 0


def test_a_node_of_the_same_organization_in_another_collaboration_is_not_the_runs_node(api, world, runs):
    other = make_collab(world.org_a, name="A-only")
    node, _ = make_node(world.org_a, other, "node-a-2")
    body = {"port": 8080, "run_id": runs["ra"].pk}
    assert api.post("/api/port", body, format="json", **bearer(node)).status_code == 401
    assert not AlgorithmPort.objects.exists()


# --- container tokens ----------------------------------------------------------------------------------
def token_request(api, node, task_id, image):
    return api.post(
        "/api/token/container", {"task_id": task_id, "image": image}, format="json", **bearer(node)
    )


def test_container_token_claims(api, world, runs):
    t = runs["t"]
    TaskDatabase.objects.create(task=t, database="default", parameters='{"query":"q"}')
    response = token_request(api, world.node_b, t.pk, t.image)
    assert response.status_code == 200
    claims = decode(response.json()["container_token"])
    assert "exp" not in claims and claims["client_type"] == "container" and claims["roles"] == []
    assert claims["sub"] == {
        "client_type": "container", "node_id": world.node_b.pk, "node_generation": 0,
        "organization_id": world.org_b.pk,
        "collaboration_id": world.collab_ab.pk, "study_id": None, "store_id": None, "task_id": t.pk,
        "image": t.image, "databases": [{"query": "q", "label": "default"}],
    }  # fmt: skip


def test_container_token_refusals(api, world, runs):
    t = runs["t"]
    missing = token_request(api, world.node_a, 99999, "x")
    # as a task out of reach (no node views every task)
    assert (missing.status_code, missing.json()) == (401, {"msg": "You lack the permission to do that!"})
    assert token_request(api, world.node_a, t.pk, t.image + "x").status_code == 401
    assert token_request(api, world.node_c, t.pk, t.image).status_code == 401
    user = make_user(world.org_a, "Root")
    assert token_request(api, user, t.pk, t.image).status_code == 401
    Run.objects.filter(task=t).update(status="completed")
    store_status(t)
    finished = token_request(api, world.node_a, t.pk, t.image)
    assert (finished.status_code, finished.json()) == (400, {"msg": "Task is already finished!"})
    assert api.post("/api/token/container", [], format="json", **bearer(world.node_a)).status_code == 400


def test_a_node_gets_no_container_token_for_a_task_its_organization_does_not_run(api, world):
    """Such a token would let the node create subtasks in the task's name (its user, its study)."""
    task = make_task(world.collab_ab, world.org_a, init_user=make_user(world.org_a))
    make_run(task, world.org_a)
    before = AuditEntry.objects.count()
    refused = token_request(api, world.node_b, task.pk, task.image)
    assert (refused.status_code, refused.json()) == (
        401,
        {"msg": "This task has no run of your node's organization!"},
    )
    assert AuditEntry.objects.count() == before
    assert token_request(api, world.node_a, task.pk, task.image).status_code == 200


def test_a_container_reads_only_within_its_collaboration(api, world, runs):
    headers = bearer(container_identity(runs["t"], world.node_a))
    assert api.get(f"/api/task/{runs['t'].pk}", **headers).status_code == 200
    assert api.get(f"/api/result?task_id={runs['t'].pk}", **headers).status_code == 200
    assert api.get(f"/api/task/{runs['u'].pk}", **headers).status_code == 401
    assert api.get(f"/api/run/{runs['rc'].pk}", **headers).status_code == 401
    assert api.get(f"/api/result?task_id={runs['u'].pk}", **headers).status_code == 401
    assert api.get(f"/api/run?collaboration_id={world.collab_c.pk}", **headers).status_code == 401
    assert api.delete(f"/api/task/{runs['t'].pk}", **headers).status_code == 401


@pytest.mark.parametrize(
    ("text", "code_point"), [("a\ud800b", "D800"), ("\udfff", "DFFF"), ("x" * 10240 + "\udc00", "DC00")]
)
@pytest.mark.parametrize("key", ["result", "log"])
def test_patch_with_surrogate_characters_is_a_400(api, world, runs, key, text, code_point):
    body = json.dumps({"status": "completed", key: text})  # JSON escapes the lone surrogate
    response = api.generic(
        "PATCH", f"/api/run/{runs['ra'].pk}", body, content_type="application/json", **bearer(world.node_a)
    )
    assert response.status_code == 400
    assert f"U+{code_point}" in json.dumps(response.json())
    runs["ra"].refresh_from_db()
    assert runs["ra"].status == "pending" and runs["ra"].result is None and runs["ra"].log is None


@pytest.mark.parametrize(
    "body",
    [
        {"status": "active", "started_at": "2026-01-02T03:04:05.123456+02:00"},
        {"status": "completed", "result": "cmVzdWx0", "log": "done", "finished_at": "2026-01-02T03:04:05Z"},
        {"status": "crashed", "log": "boom"},
    ],
)
@pytest.mark.parametrize("with_ports", [True, False])
def test_patch_answers_the_run_as_it_is_stored(api, world, runs, body, with_ports):
    if with_ports:  # the answer reads them with the run: labels of any text, another run's apart
        AlgorithmPort.objects.create(run=runs["ra"], port=8080, label="api")
        AlgorithmPort.objects.create(run=runs["rb"], port=8081, label="other run")
        AlgorithmPort.objects.create(run=runs["ra"], port=9090, label=None)
        AlgorithmPort.objects.create(run=runs["ra"], port=7070, label='q"uo\\te, [é] ☃')
    patched = api.patch(f"/api/run/{runs['ra'].pk}", body, format="json", **bearer(world.node_a))
    assert patched.status_code == 200, patched.json()
    # Byte for byte: the same fields in the same order as the run's own page.
    assert patched.content == api.get(f"/api/run/{runs['ra'].pk}", **bearer(world.node_a)).content
    ports = [(port["port"], port["label"]) for port in patched.json()["ports"]]
    assert ports == ([(8080, "api"), (9090, None), (7070, 'q"uo\\te, [é] ☃')] if with_ports else [])
    assert patched.json()["node"]["id"] == world.node_a.pk
