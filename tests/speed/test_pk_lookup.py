"""Lookups compiled once give what the ORM gives: a row by primary key (its related objects included),
the rows of a query with integer parameters; writes compiled once write what the ORM writes."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, connections
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEntry, Rule, User
from nodes.models import Node
from tasks.models import AlgorithmPort, Run, Task
from tests.factories import make_collab, make_node, make_org, make_run, make_task, make_user
from vantage6.api.sql import CompiledInsert, CompiledInsertIf, CompiledRows, CompiledUpdate, PkLookup

pytestmark = pytest.mark.django_db

run_with_task = PkLookup(lambda: Run.objects.select_related("task"))
task_with_parent = PkLookup(lambda: Task.objects.select_related("parent"))


@pytest.fixture
def tasks():
    org = make_org()
    collab = make_collab(org)
    parent = make_task(collab, org, org)
    child = make_task(collab, org, org, parent=parent)
    return parent, child


def fields(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


def test_a_run_and_its_task_come_in_one_query_as_the_orm_builds_them(tasks):
    parent, _ = tasks
    run = make_run(parent, parent.init_org, started_at=timezone.now(), log="log")
    expected = Run.objects.select_related("task").get(pk=run.pk)
    with CaptureQueriesContext(connection) as queries:
        found = run_with_task(run.pk)
        assert found is not None
        assert fields(found) == fields(expected)
        assert fields(found.task) == fields(expected.task)
    assert len(queries) == 1
    assert not found._state.adding and found._state.db == expected._state.db


@pytest.mark.parametrize("which", ["parent", "child"])
def test_a_null_foreign_key_gives_no_related_object(tasks, which):
    parent, child = tasks
    task = {"parent": parent, "child": child}[which]
    found = task_with_parent(task.pk)
    assert found is not None
    with CaptureQueriesContext(connection) as queries:
        related = found.parent
    assert len(queries) == 0  # loaded (or known to be none) without another query
    assert (related.pk if related else None) == task.parent_id


@pytest.mark.usefixtures("tasks")
@pytest.mark.parametrize("pk", [0, 10**9, 2**63, -(2**63) - 1])
def test_a_missing_row_is_none(pk):
    assert run_with_task(pk) is None


runs_of = CompiledRows(
    lambda task, organization: Run.objects.filter(task_id=task, organization_id=organization).values_list(
        "id", "status", "started_at"
    ),
    "task",
    "organization",
)


def test_a_query_compiled_once_gives_the_rows_the_orm_gives_for_each_value(tasks):
    parent, child = tasks
    org = parent.init_org
    make_run(parent, org, started_at=timezone.now())  # a datetime comes as the ORM gives it
    for task in (parent, child, parent):
        expected = list(
            Run.objects.filter(task_id=task.pk, organization_id=org.pk).values_list(
                "id", "status", "started_at"
            )
        )
        assert expected
        assert runs_of(task=task.pk, organization=org.pk) == expected
    assert runs_of(task=parent.pk, organization=org.pk + 1000) == []
    assert runs_of(task=2**63, organization=org.pk) == []


insert_entry = CompiledInsert(
    AuditEntry, ["created_at", "actor_type", "actor_id", "action", "object_type", "object_id", "data"]
)
insert_port = CompiledInsert(AlgorithmPort, ["run", "port", "label"])
save_run = CompiledUpdate(Run, ["started_at", "log", "status"])


@pytest.mark.parametrize(
    "model, insert, values",
    [
        (
            AuditEntry,
            insert_entry,
            {
                "actor_type": "node",
                "actor_id": 3,
                "action": "run.update",
                "object_type": "run",
                "data": {"a": [1]},
            },
        ),
        (AuditEntry, insert_entry, {"actor_type": "system", "action": "run.cleanup", "object_type": ""}),
        (AlgorithmPort, insert_port, {"port": 8080, "label": None}),
    ],
)
def test_an_insert_compiled_once_writes_the_row_the_orm_writes(tasks, model, insert, values):
    if model is AlgorithmPort:
        values = {**values, "run": make_run(tasks[0], tasks[0].init_org)}
    expected = model.objects.create(**values)
    with CaptureQueriesContext(connection) as queries:
        written = insert(**values)
    assert len(queries) == 1
    assert written.pk is not None and written.pk != expected.pk and not written._state.adding
    stored, reference = model.objects.get(pk=written.pk), model.objects.get(pk=expected.pk)
    ignored = {"id", "created_at"}  # auto_now_add: set on each insert
    assert {k: v for k, v in fields(stored).items() if k not in ignored} == {
        k: v for k, v in fields(reference).items() if k not in ignored
    }
    if model is AuditEntry:
        assert stored.created_at is not None and stored.created_at >= reference.created_at


insert_port_if_in_org = CompiledInsertIf(
    AlgorithmPort,
    ["run", "port", "label"],
    CompiledRows(
        lambda run, org: Run.objects.filter(pk=run, organization_id=org).values_list("id"), "run", "org"
    ),
)


@pytest.mark.parametrize("label", ["api", None, 'q"uo\\te ☃'])
def test_an_insert_compiled_once_with_a_condition_writes_only_when_the_condition_finds_a_row(tasks, label):
    parent, _ = tasks
    run = make_run(parent, parent.init_org)
    other_org = make_org("other")
    for keys in ({"run": run.pk, "org": other_org.pk}, {"run": run.pk + 1000, "org": run.organization_id}):
        with CaptureQueriesContext(connection) as queries:
            assert insert_port_if_in_org(keys, run_id=keys["run"], port=1, label=label) is None
        assert len(queries) == 1
    assert insert_port_if_in_org({"run": 2**63, "org": 1}, run_id=1, port=1, label=label) is None
    assert not AlgorithmPort.objects.exists()
    with CaptureQueriesContext(connection) as queries:
        written = insert_port_if_in_org(
            {"run": run.pk, "org": run.organization_id}, run_id=run.pk, port=8, label=label
        )
    assert len(queries) == 1
    assert written is not None and not written._state.adding
    stored = AlgorithmPort.objects.get()
    assert (stored.pk, stored.run_id, stored.port, stored.label) == (written.pk, run.pk, 8, label)


def test_an_update_compiled_once_writes_the_fields_the_orm_writes(tasks):
    parent, child = tasks
    run, other = make_run(parent, parent.init_org), make_run(child, child.init_org)
    run.started_at, run.log, run.status, run.result = timezone.now(), "log", "active", "not saved"
    with CaptureQueriesContext(connection) as queries:
        save_run(run)
    assert len(queries) == 1
    stored = Run.objects.get(pk=run.pk)
    assert (stored.started_at, stored.log, stored.status, stored.result) == (
        run.started_at,
        "log",
        "active",
        None,
    )
    assert fields(Run.objects.get(pk=other.pk)) == fields(other)  # one row only


def test_an_update_of_a_missing_row_fails(tasks):
    run = make_run(tasks[0], tasks[0].init_org)
    Run.objects.filter(pk=run.pk).delete()
    with pytest.raises(DatabaseError):
        save_run(run)


def test_an_update_of_several_rows_compiled_once_writes_those_rows_only(tasks):
    parent, _ = tasks
    runs = [make_run(parent, parent.init_org) for _ in range(3)]
    now = timezone.now()
    assert save_run.rows([runs[0].pk, runs[2].pk], [now, "killed", "killed"]) == 2
    assert save_run.rows([], [now, "x", "x"]) == 0
    stored = {
        run.pk: (run.started_at, run.log, run.status)
        for run in Run.objects.filter(pk__in=[r.pk for r in runs])
    }
    assert stored == {
        runs[0].pk: (now, "killed", "killed"),
        runs[1].pk: (None, runs[1].log, runs[1].status),
        runs[2].pk: (now, "killed", "killed"),
    }


def test_a_multi_row_insert_compiled_once_writes_the_rows_bulk_create_writes(tasks):
    parent, _ = tasks
    org = parent.init_org
    rows = [{"task": parent, "organization": org, "input": f"in-{i}", "status": "pending"} for i in range(3)]
    expected = Run.objects.bulk_create(Run(**values) for values in rows)
    insert_runs = CompiledInsert(Run, [f.name for f in Run._meta.concrete_fields if not f.primary_key])
    with CaptureQueriesContext(connection) as queries:
        written = insert_runs.many(rows)
    assert len(queries) == 1
    assert [run.input for run in written] == ["in-0", "in-1", "in-2"]
    for run, reference in zip(written, expected, strict=True):
        stored = Run.objects.get(pk=run.pk)
        ignored = {"id", "assigned_at"}  # a default of the time of the insert
        assert {k: v for k, v in fields(stored).items() if k not in ignored} == {
            k: v for k, v in fields(Run.objects.get(pk=reference.pk)).items() if k not in ignored
        }
    assert insert_runs.many([]) == []


def _state(obj) -> dict:
    """An instance's attributes and state, its related objects by primary key."""
    values = {key: value for key, value in vars(obj).items() if key != "_state"}
    cache = {name: related.pk for name, related in obj._state.fields_cache.items()}
    return {**values, "adding": obj._state.adding, "db": obj._state.db, "cache": cache}


LOOKUPS = [
    lambda: Run.objects.select_related("task"),
    lambda: Task.objects.only("name", "status"),  # the other columns deferred
    lambda: Node.objects.select_related("organization"),  # a child table of Authenticatable
    lambda: User.objects.all(),
]


@pytest.mark.parametrize("queryset", LOOKUPS)
def test_an_instance_is_built_as_the_orm_builds_it_and_saves_as_it(tasks, queryset):
    parent, _ = tasks
    make_run(parent, parent.init_org, log="log")
    make_user(parent.init_org)
    make_node(parent.init_org, parent.collaboration)
    model = queryset().model
    row = queryset().order_by("pk").first()
    expected = _state(row)
    found = PkLookup(queryset)(row.pk)

    assert _state(found) == expected
    assert found.get_deferred_fields() == row.get_deferred_fields()
    rows = model.objects.count()
    found.save()  # an update of the loaded columns, as the ORM's instance does
    assert _state(queryset().get(pk=row.pk)) == expected
    assert model.objects.count() == rows


rule_by_pk = PkLookup(Rule.objects.all)


def test_a_new_thread_compiles_no_query_again(monkeypatch):
    """Plans are kept per database: the connection of another request thread uses them as they are."""
    rule = Rule.objects.order_by("id").first()
    assert rule_by_pk(rule.pk) == rule  # compiled here, if not before
    compiled: list[str] = []
    as_sql = SQLCompiler.as_sql

    def counted(self, *args, **kwargs):
        compiled.append("query")
        return as_sql(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    looked_up: list[object] = []

    def request_thread() -> None:
        try:
            looked_up.append(rule_by_pk(rule.pk))
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=request_thread)
    thread.start()
    thread.join()
    assert looked_up == [rule]
    assert compiled == []


@pytest.mark.parametrize("found", [(True, True), (True, False), (False, True), (False, False)])
def test_two_lookups_with_a_condition_come_in_one_statement_whichever_rows_exist(tasks, found):
    parent, child = tasks
    missing = Task.objects.order_by("-pk").values_list("pk", flat=True)[0] + 1
    pk, other_pk = (child.pk if found[0] else missing), (parent.pk if found[1] else missing)

    with CaptureQueriesContext(connection) as captured:
        row, other, held = task_with_parent.with_other(pk, task_with_parent, other_pk, ("1 = %s", [1]))

    assert len(captured) == 1
    assert (row.pk if row else None, other.pk if other else None) == (
        child.pk if found[0] else None,
        parent.pk if found[1] else None,
    )
    assert held is True
    assert row is None or row.parent == parent
