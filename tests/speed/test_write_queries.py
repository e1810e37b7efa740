"""The writes a network lives on cost a fixed number of SQL statements, whatever the number of
organizations in the collaboration (one bulk statement per table). Transaction control (savepoints in
tests, BEGIN/COMMIT in production) is not counted."""

from __future__ import annotations

import pytest
import sqlparse
from django.db import connection
from django.test.utils import CaptureQueriesContext

from nodes.models import NodeConfig
from tasks.models import Run, Task
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task, make_user
from tests.tasks.conftest import container_headers_from, plain

pytestmark = pytest.mark.django_db

RESULT = "x" * 10240


def statements(call) -> int:
    """The statements ``call`` runs, those sent together in one query string counted one by one (on
    PostgreSQL the writes nothing reads go with the next statement; a prepared statement's PREPARE, in
    the query string of its first use on a connection, is not counted)."""
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code < 300, response.content
    sql = [part for q in captured.captured_queries for part in sqlparse.split(q["sql"])]
    return len([s for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "PREPARE "))])


def network(size: int):
    """A collaboration of ``size`` organizations, each with its node."""
    orgs = [make_org(f"org-{size}-{i}") for i in range(size)]
    collab = make_collab(*orgs, name=f"collab-{size}")
    nodes = [make_node(org, collab, f"node-{size}-{i}")[0] for i, org in enumerate(orgs)]
    return orgs, collab, nodes


def task_body(collab, orgs) -> dict:
    return {
        "name": "t",
        "image": "some/image",
        "collaboration_id": collab.pk,
        "organizations": [{"id": org.pk, "input": plain()} for org in orgs],
        "databases": [{"label": "default"}],
    }


def warmed(api, identity) -> dict:
    """Headers of ``identity``, whose first call (it records when it was seen) is behind it."""
    headers = bearer(identity)
    api.get("/api/organization", **headers)
    return headers


# The caller with the run, its task, its ports and the statuses of its task's runs (one statement),
# the UPDATE, the audit record; + the task when its status changes (here the first run to become
# active, and a failure, which also fails the runs of the task that never started); + the lock of the
# task's row before the run is read, where the database has row locks (PostgreSQL).
PATCH_RUN = {
    "status": ({"status": "active"}, 4),
    "completion": ({"status": "completed", "result": RESULT, "log": "ok"}, 3),
    "failure": ({"status": "failed", "log": "crash"}, 5),
}


@pytest.mark.parametrize("case", PATCH_RUN)
def test_patch_run_by_its_node(api, case):
    body, expected = PATCH_RUN[case]
    orgs, collab, nodes = network(3)
    task = make_task(collab, orgs[0])
    run, *_ = (make_run(task, org) for org in orgs)
    headers = warmed(api, nodes[0])
    lock = 1 if connection.features.has_select_for_update else 0
    assert (
        statements(lambda: api.patch(f"/api/run/{run.pk}", body, format="json", **headers)) == expected + lock
    )


def post_task() -> int:
    """The caller, the collaboration with its members (and which have a node in it, and which a node's
    policy: none here, so the target nodes are not read), the memberships again as the writes begin, the
    task (INSERT and its job id), its databases, its runs, the audit record (the answer shows them as
    written); on PostgreSQL the task's rows, the memberships' check and the audit record are one
    statement."""
    return 3 if connection.vendor == "postgresql" else 8


@pytest.mark.parametrize("size", [5, 50])
def test_post_task_does_not_grow_with_the_organizations(api, size):
    orgs, collab, _ = network(size)
    headers = warmed(api, make_user(orgs[0], "Researcher"))
    assert (
        statements(lambda: api.post("/api/task", task_body(collab, orgs), format="json", **headers))
        == post_task()
    )
    assert Run.objects.count() == size


def test_post_task_reads_the_target_nodes_when_one_has_a_policy(api):
    orgs, collab, nodes = network(3)
    NodeConfig.objects.create(node=nodes[1], key="allowed_orgs", value=orgs[0].name)
    headers = warmed(api, make_user(orgs[0], "Researcher"))
    assert (
        statements(lambda: api.post("/api/task", task_body(collab, orgs), format="json", **headers))
        == post_task() + 2  # the target nodes with their policies, the caller's organization (its name)
    )


def test_container_subtask(api):
    orgs, collab, nodes = network(5)
    parent = make_task(collab, orgs[0], *orgs, init_user=make_user(orgs[0], "Researcher"))
    headers = container_headers_from(api, nodes[1], parent)
    body = {**task_body(collab, orgs), "image": parent.image}
    api.post("/api/task", body, format="json", **headers)  # loads the container role's rules, once a process
    # A task's statements: the check that the container's task still runs in place of the caller (it
    # reads the parent task too: no statement of its own), no job id of its own (the parent's; on
    # PostgreSQL no statement of its own anyway), no read of the collaboration (its checks are the
    # write's conditions).
    job_id = 0 if connection.vendor == "postgresql" else 1
    assert (
        statements(lambda: api.post("/api/task", body, format="json", **headers)) == post_task() - job_id - 1
    )


def test_port_of_a_run(api):
    orgs, collab, nodes = network(2)
    run = make_run(make_task(collab, orgs[0]), orgs[0])
    headers = warmed(api, nodes[0])
    body = {"port": 8080, "run_id": run.pk, "label": "api"}
    # The INSERT (if the run is one the node executes), with the caller's check (its token's login, its
    # run: no lookup of the caller before it), and the audit record; on PostgreSQL one statement.
    expected = 1 if connection.vendor == "postgresql" else 2
    assert statements(lambda: api.post("/api/port", body, format="json", **headers)) == expected


@pytest.mark.parametrize("size", [5, 50])
def test_kill_task_does_not_grow_with_the_runs(api, size):
    orgs, collab, _ = network(size)
    task = make_task(collab, orgs[0])
    for org in orgs:
        make_run(task, org, status="active")
    headers = warmed(api, make_user(orgs[0], "Root"))
    # One UPDATE of its open runs (which finds them, and checks the caller itself: its token's login, its
    # global right to send events; then neither the caller nor the task needs a read before it), one of
    # the task's status, the audit record; on PostgreSQL the three writes are one statement, after the
    # lock of the task's family.
    kill = lambda: api.post("/api/kill/task", {"id": task.pk}, format="json", **headers)  # noqa: E731
    assert statements(kill) == (2 if connection.vendor == "postgresql" else 3)


def test_create_user(api):
    org = make_org("o")
    headers = warmed(api, make_user(org, "Organization Admin"))
    body = {
        "username": "bob",
        "email": "bob@example.org",
        "password": "Bob-password-1!",
        "organization_id": org.pk,
    }
    assert statements(lambda: api.post("/api/user", body, format="json", **headers)) == 9


def test_post_task_answers_the_task_as_it_is_stored(api):
    """The answer is built from the task as written, not read back: it must be what a read shows."""
    orgs, collab, nodes = network(2)
    user = make_user(orgs[0], "Researcher")
    headers = warmed(api, user)
    databases = [{"label": "default"}, {"label": "other", "query": "SELECT 1", "sheet_name": "s"}]
    created = api.post(
        "/api/task", {**task_body(collab, orgs), "databases": databases}, format="json", **headers
    )
    assert created.status_code == 201
    assert [db["label"] for db in created.json()["databases"]] == ["default", "other"]
    assert created.json() == api.get(f"/api/task/{created.json()['id']}", **headers).json()
    parent = Task.objects.get(pk=created.json()["id"])
    container = container_headers_from(api, nodes[1], parent)
    body = {**task_body(collab, orgs), "image": parent.image}
    subtask = api.post("/api/task", body, format="json", **container)
    assert subtask.status_code == 201
    assert subtask.json() == api.get(f"/api/task/{subtask.json()['id']}", **headers).json()


# Round trips to PostgreSQL of one write as the server runs it (its own transaction, committed): the
# caller and the write's statements (as above), the first in the transaction with BEGIN in front, and
# the audit record with COMMIT. BEGIN, the audit record and COMMIT were a round trip each; the updates
# of a run and of its task's status (rows the write holds locked, read by nothing after them) go with
# the audit record and COMMIT too. Row locks go with the statement after them: a run update's lock of
# its task (guarded by the token's check) with BEGIN and the read of the run and its task's runs, which
# reads the node, its caller, too: two round trips in all. The writes of one statement with
# their audit record (a data-modifying WITH) need no transaction of their own: a port; a kill, whose
# UPDATE of its open runs, its task's status and audit record go with its lock of the task's family in
# one query string (one transaction), read before it (with the caller, in one statement) only where the
# caller's right depends on its collaboration (a collaboration admin); a new task with its job id, databases,
# runs and audit record, after the caller (a container: whether its task still runs, with the parent task's
# fields), the collaboration with its members and the organizations that have a node in it (or a node with a
# policy: a user's task reads those nodes then); a container's subtask outside a study checks those in its
# statement instead (two round trips). A port, and a kill by a caller with a global right, check the
# caller in that statement (its token's login and generation; the node's run, the user's right): one round
# trip in all.
ROUND_TRIPS = [
    ("port", 1),
    ("run status", 2),
    ("run completion", 2),
    ("kill", 1),
    ("kill (collaboration scope)", 2),
    ("task", 3),
    ("subtask", 2),
]


@requires_services("postgres")
@pytest.mark.usefixtures("transactional_db")
@pytest.mark.parametrize(("write", "expected"), ROUND_TRIPS, ids=[write for write, _ in ROUND_TRIPS])
def test_round_trips_of_a_write_on_postgresql(api, sent, write, expected):
    orgs, collab, nodes = network(3)
    task = make_task(collab, orgs[0], init_user=make_user(orgs[0], "Researcher"))
    run, *_ = (
        make_run(task, org, status="active" if write.startswith("kill") else "pending") for org in orgs
    )
    writes = {
        "port": (nodes[0], "/api/port", {"port": 8080, "run_id": run.pk, "label": "api"}),
        "run status": (nodes[0], f"/api/run/{run.pk}", {"status": "active"}),
        "run completion": (nodes[0], f"/api/run/{run.pk}", {"status": "completed", "result": RESULT}),
        "kill": (make_user(orgs[0], "Root"), "/api/kill/task", {"id": task.pk}),
        "kill (collaboration scope)": (
            make_user(orgs[0], "Collaboration Admin"),
            "/api/kill/task",
            {"id": task.pk},
        ),
        "task": (make_user(orgs[0], "Researcher"), "/api/task", task_body(collab, orgs)),
        "subtask": (None, "/api/task", {**task_body(collab, orgs), "image": task.image}),
    }
    identity, path, body = writes[write]
    method = api.patch if path.startswith("/api/run/") else api.post
    if identity is None:  # the container of the task's run at nodes[1]
        headers = container_headers_from(api, nodes[1], task)
        method(path, body, format="json", **headers)  # loads the container role's rules, once a process
    else:
        headers = warmed(api, identity)
    if write == "kill (collaboration scope)":  # its first kill tries the one statement of a global right
        first = make_task(collab, orgs[0], init_user=make_user(orgs[0], "Researcher"))
        make_run(first, orgs[0], status="active")
        assert method(path, {"id": first.pk}, format="json", **headers).status_code == 200
    if write in ("kill (collaboration scope)", "subtask"):  # after a write of the same statements
        recording = connection.connection.cursor_factory
        connection.close()  # its statements prepared on a connection of their own, as for the others
        connection.ensure_connection()
        connection.connection.cursor_factory = recording
    sent.clear()

    response = method(path, body, format="json", **headers)

    assert response.status_code < 300, response.content
    assert len(sent) == expected, sent
    if write in (
        "port",
        "kill",
        "kill (collaboration scope)",
        "task",
        "subtask",
    ):  # one statement with its audit record
        assert "WITH " in sent[-1] and 'INSERT INTO "audit_entry"' in sent[-1]
        assert not any(sql.startswith("BEGIN") or sql.endswith("COMMIT") for sql in sent), sent
        if write.startswith("kill"):  # after the lock of the task's family, in its query string
            assert sent[-1].index(" FOR UPDATE") < sent[-1].index("WITH ")
        return
    assert [sql.startswith("BEGIN; ") for sql in sent].count(True) == 1
    assert 'INSERT INTO "audit_entry"' in sent[-1] and sent[-1].endswith("; COMMIT")
