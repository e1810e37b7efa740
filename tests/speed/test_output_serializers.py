"""The output serializers give byte for byte what DRF's own field-by-field representation gives."""

from __future__ import annotations

from datetime import datetime

import pytest
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from accounts.audit import actor_of, audit
from accounts.models import AuditAction, AuditEntry, Role, Rule, User
from accounts.permissions import principal_for_system
from accounts.serializers import AuditEntryOutput, RoleOutput, RuleOutput, UserOutput, UserPermissionsOutput
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from collaborations.serializers import (
    AlgorithmStoreOutput,
    CollaborationOutput,
    OrganizationOutput,
    StudyOutput,
)
from nodes.models import Node, NodeConfig
from nodes.serializers import NodeCreatedOutput, NodeOutput, NodeSimpleOutput
from tasks import selectors
from tasks.models import AlgorithmPort, Run, Task, TaskDatabase, TaskStatus
from tasks.serializers import EmbeddedTaskOutput, PortOutput, ResultOutput, RunOutput, TaskOutput
from tests.factories import bearer, make_run, make_study, make_task, make_user
from vantage6.api.serializers import OutputSerializer

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(world):
    """Rows of every kind, with nulls and non-nulls in the optional columns."""
    user = make_user(world.org_a, "Researcher", rules=Rule.objects.all()[:2])
    User.objects.filter(pk=user.pk).update(last_seen=datetime(2024, 1, 2, 3, 4, 5, 6), ip="10.0.0.1")
    Organization.objects.filter(pk=world.org_b.pk).update(public_key_bytes=b"-----BEGIN PUBLIC KEY-----")
    make_study(world.collab_ab, world.org_a, world.org_b, name="study")
    AlgorithmStore.objects.create(
        name="local", url="https://store.example/api", collaboration=world.collab_ab
    )
    AlgorithmStore.objects.create(name="global", url="https://all.example/api")
    NodeConfig.objects.create(node=world.node_a, key="columns_db", value="age")
    Node.objects.filter(pk=world.node_b.pk).update(
        last_seen=datetime(2024, 1, 1), ip="10.0.0.2", status="online"
    )
    parent = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, init_user=user, name="t")
    TaskDatabase.objects.create(task=parent, database="default", parameters='{"query":"x"}')
    make_task(world.collab_ab, world.org_b, world.org_b, parent=parent)
    done = make_run(parent, world.org_b, status=TaskStatus.COMPLETED, result="cmVzdWx0")
    done.started_at, done.finished_at, done.log = datetime(2024, 3, 1), datetime(2024, 3, 1, 0, 0, 1), "ok"
    done.save()
    AlgorithmPort.objects.create(run=done, port=8080, label="web")
    AlgorithmPort.objects.create(run=done, port=9000, label=None)
    audit(None, AuditAction.RUN_CLEANUP, None, count=1, days=30)
    audit(actor_of(user), AuditAction.USER_LOGIN, user)
    return world


@pytest.fixture
def drf_only(monkeypatch):
    """Serializers that represent rows with DRF's own ``Serializer.to_representation``."""

    def drf(self, instance):
        return serializers.ModelSerializer.to_representation(self, instance)

    def use() -> None:
        monkeypatch.setattr(OutputSerializer, "to_representation", drf)

    return use


def tasks(include=frozenset()):
    rows = Task.objects.order_by("id")
    rows = list(rows.prefetch_related("runs__task") if include else rows)
    selectors.attach_task_details(rows, include)
    return rows


def runs(include_task=False):
    rows = list(selectors.run_queryset().order_by("id"))
    selectors.attach_run_details(rows, include_task)
    return rows


def tasks_from_relations():
    """Tasks whose databases and runs' ports come from Django's relations, as written tasks show them."""
    rows = list(Task.objects.prefetch_related("databases", "runs__task", "runs__ports").order_by("id"))
    selectors.attach_nodes(run for task in rows for run in task.runs.all())
    return rows


def runs_from_relations():
    rows = Run.objects.select_related("task").prefetch_related("ports", "task__databases").order_by("id")
    rows = list(rows)
    selectors.attach_nodes(rows)
    return rows


CASES = {
    "task": (TaskOutput, lambda: tasks(), {}),
    "task+runs": (TaskOutput, lambda: tasks({"runs", "results"}), {"include": {"runs", "results"}}),
    "task embedded": (EmbeddedTaskOutput, lambda: tasks(), {}),
    "run": (RunOutput, lambda: runs(), {}),
    "run+task": (RunOutput, lambda: runs(True), {"include_task": True}),
    "result": (ResultOutput, lambda: runs(), {}),
    "port": (PortOutput, lambda: AlgorithmPort.objects.order_by("id"), {}),
    "user": (UserOutput, lambda: User.objects.order_by("id"), {}),
    # Its context is read once the data is there: whom the user is shown to (here: the server itself).
    "user+permissions": (
        UserPermissionsOutput,
        lambda: User.objects.order_by("id"),
        lambda: {"viewer": principal_for_system()},
    ),
    "role": (RoleOutput, lambda: Role.objects.order_by("id"), {}),
    "rule": (RuleOutput, lambda: Rule.objects.order_by("id"), {}),
    "audit": (AuditEntryOutput, lambda: AuditEntry.objects.order_by("id"), {}),
    "organization": (OrganizationOutput, lambda: Organization.objects.order_by("id"), {}),
    "collaboration": (CollaborationOutput, lambda: Collaboration.objects.order_by("id"), {}),
    "collaboration+orgs": (
        CollaborationOutput,
        lambda: Collaboration.objects.prefetch_related("organizations").order_by("id"),
        {"include_organizations": True},
    ),
    "study": (StudyOutput, lambda: Study.objects.order_by("id"), {}),
    "study+orgs": (StudyOutput, lambda: Study.objects.order_by("id"), {"include_organizations": True}),
    "store": (AlgorithmStoreOutput, lambda: AlgorithmStore.objects.order_by("id"), {}),
    "node simple": (NodeSimpleOutput, lambda: Node.objects.order_by("id"), {}),
    "node": (NodeOutput, lambda: Node.objects.prefetch_related("config").order_by("id"), {}),
    "node created": (NodeCreatedOutput, lambda: Node.objects.order_by("id"), {"api_key": "key"}),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.usefixtures("data")
def test_same_bytes_as_drf(drf_only, case):
    serializer, rows, context = CASES[case]
    context = context() if callable(context) else context
    rows = list(rows())
    assert rows
    fast = JSONRenderer().render(serializer(rows, many=True, context=context).data)
    represented = JSONRenderer().render(serializer.represent(rows, context))
    single = JSONRenderer().render(serializer(rows[-1], context=context).data)
    drf_only()
    drf = JSONRenderer().render(serializer(rows, many=True, context=context).data)
    assert fast == represented == drf
    assert single == JSONRenderer().render(serializer(rows[-1], context=context).data)


@pytest.mark.parametrize(
    ("serializer", "attached", "related", "context"),
    [
        (TaskOutput, tasks, tasks_from_relations, {}),
        (
            TaskOutput,
            lambda: tasks({"runs", "results"}),
            tasks_from_relations,
            {"include": {"runs", "results"}},
        ),
        (RunOutput, runs, runs_from_relations, {}),
        (RunOutput, lambda: runs(True), runs_from_relations, {"include_task": True}),
    ],
    ids=["task", "task+runs", "run", "run+task"],
)
@pytest.mark.usefixtures("data")
def test_attached_details_show_as_the_relations(serializer, attached, related, context):
    """The databases and ports a read attaches show as the relations a write leaves on its rows."""
    rows = attached()
    assert any(getattr(row, "database_entries", None) or getattr(row, "port_entries", None) for row in rows)
    fast = JSONRenderer().render(serializer(rows, many=True, context=context).data)
    assert fast == JSONRenderer().render(serializer(related(), many=True, context=context).data)


def test_every_output_serializer_is_covered():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    assert set(subclasses(OutputSerializer)) <= {serializer for serializer, _, _ in CASES.values()}


def test_rows_the_plan_does_not_cover_go_through_drf():
    class WithoutLabel:
        id, port = 5, 80

    class WithoutPort:
        id, label = 5, "x"

    assert PortOutput(WithoutLabel()).data == {"id": 5, "port": 80, "label": None}  # nullable
    with pytest.raises(AttributeError):
        PortOutput(WithoutPort()).data  # noqa: B018 - DRF's own error for a required attribute
    assert PortOutput({"id": 1, "port": 2, "label": "x"}).data == {"id": 1, "port": 2, "label": "x"}
    rows = [WithoutLabel(), {"id": 1, "port": 2, "label": "x"}]
    assert PortOutput.represent(rows) == [
        {"id": 5, "port": 80, "label": None},
        {"id": 1, "port": 2, "label": "x"},
    ]
    with pytest.raises(AttributeError):
        PortOutput.represent([WithoutPort()])


def test_node_configuration_comes_with_the_row_unchanged(api, world):
    values = [
        "",
        "plain",
        'quote " and \\ backslash',
        '{"json": [1, 2]}',
        "ünïcödé ✓",
        "line\nbreak",
        "[1,2]",
    ]
    for value in values:
        NodeConfig.objects.create(node=world.node_a, key=f"k{len(value)}", value=value)
    NodeConfig.objects.create(node=world.node_a, key="columns_db", value="first")  # a list: several rows
    NodeConfig.objects.create(node=world.node_a, key="columns_db", value="second")
    expected = [
        {"key": c.key, "value": c.value} for c in NodeConfig.objects.filter(node=world.node_a).order_by("id")
    ]
    admin = make_user(world.org_a, "Root")
    assert api.get(f"/api/node/{world.node_a.pk}", **bearer(admin)).json()["config"] == expected
    listed = {row["id"]: row for row in api.get("/api/node", **bearer(admin)).json()["data"]}
    assert listed[world.node_a.pk]["config"] == expected
    assert listed[world.node_b.pk]["config"] == []
