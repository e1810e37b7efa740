"""One answer per scope question: the object check (``Principal.allows``) agrees with the list filter
(``Principal.visible``) for every resource, scope and row, whether it is evaluated on the loaded row
or asked of the database."""

from __future__ import annotations

import pytest

from accounts.catalogue import OPERATIONS
from accounts.models import AuditEntry, Role, Rule, User
from accounts.permissions import RESOURCE_SCOPES, Principal
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from nodes.models import Node
from tasks.models import Run, Task
from tests.factories import loaded_principal, make_org, make_study, make_task, make_user
from tests.tasks.conftest import container_identity

pytestmark = pytest.mark.django_db

MODELS = {
    "organization": Organization, "collaboration": Collaboration, "user": User, "node": Node,
    "study": Study, "task": Task, "run": Run, "algorithmstore": AlgorithmStore, "role": Role,
    "audit": AuditEntry, "task_runs": Task,
}  # fmt: skip


@pytest.fixture
def rows(world):
    """Rows of every kind in every place, and an organization in no collaboration."""
    lonely = make_org("lonely")
    for org in (world.org_a, world.org_b, world.org_c, lonely):
        make_user(org)
        Role.objects.create(name=f"role of {org.name}", organization=org)
    for collab, orgs in ((world.collab_ab, (world.org_a, world.org_b)), (world.collab_c, (world.org_c,))):
        make_study(collab, *orgs)
        AlgorithmStore.objects.create(
            name=collab.name, url=f"https://{collab.name}.org", collaboration=collab
        )
        for org in orgs:
            make_task(collab, org, *orgs)  # a run for every member
    AlgorithmStore.objects.create(name="everyone", url="https://all.org")
    return lonely


def _callers(world, lonely, resource: str):
    rule_resource = Principal.rule_resource(resource)
    for org in (world.org_a, lonely):
        for scope in ("OWN", "ORGANIZATION", "COLLABORATION", "GLOBAL"):
            rule = Rule.objects.filter(name=rule_resource, scope=scope, operation=OPERATIONS["v"]).first()
            if rule is not None:
                yield f"{scope} in {org.name}", loaded_principal(make_user(org, rules=[rule]))
    yield "node", loaded_principal(world.node_a)
    task = Task.objects.filter(collaboration=world.collab_ab).first()
    yield "container", loaded_principal(container_identity(task, world.node_a))


@pytest.mark.parametrize("resource", sorted(MODELS))
def test_the_object_check_agrees_with_the_list_filter(world, rows, resource):
    model = MODELS[resource]
    for name, principal in _callers(world, rows, resource):
        listed = set(principal.visible_or_none(resource, model.objects.all()).values_list("pk", flat=True))
        for obj in model.objects.all():
            assert principal.allows(resource, obj) == (obj.pk in listed), f"{resource} {obj.pk} for {name}"


def test_every_scope_definition_is_checked():
    assert set(MODELS) == set(RESOURCE_SCOPES)


def test_a_node_may_edit_only_the_runs_it_executes(world, rows):  # noqa: ARG001 - the rows
    node = loaded_principal(world.node_a)
    editable = {run.pk for run in Run.objects.select_related("task") if node.allows("run", run, "edit")}
    expected = Run.objects.filter(organization=world.org_a, task__collaboration=world.collab_ab)
    assert editable == set(expected.values_list("pk", flat=True)) and editable
