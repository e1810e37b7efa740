"""A membership that ends between the checks of a new task and its one statement (PostgreSQL, where
the checks read outside a transaction) gets no task: the statement itself requires the memberships."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry
from collaborations.models import Collaboration
from tasks import services
from tasks.models import Run, Task
from tests.conftest import requires_services
from tests.factories import bearer
from tests.tasks.conftest import plain, task_body

pytestmark = [pytest.mark.django_db, requires_services("postgres")]


def _leaves(org):
    def change(world) -> None:
        Collaboration.organizations.through.objects.filter(
            collaboration_id=world.collab_ab.pk, organization_id=getattr(world, org).pk
        ).delete()

    return change


def _collaboration_deleted(world) -> None:
    Collaboration.objects.filter(pk=world.collab_ab.pk).delete()


@pytest.mark.parametrize(
    ("change", "status", "msg"),
    [
        (_leaves("org_b"), 400, "Organization(s) [{b}] are not part of collaboration id={ab}!"),
        (_leaves("org_a"), 401, "You can only create tasks in collaborations your organization is part of"),
        (_collaboration_deleted, 404, "Collaboration id={ab} not found!"),
    ],
    ids=["target-leaves", "creator-leaves", "collaboration-deleted"],
)
def test_a_membership_ended_after_the_checks_gets_no_task(
    api, world, researcher, monkeypatch, change, status, msg
):
    checked = services._check_inputs

    def then_changed(*args, **kwargs):
        checked(*args, **kwargs)  # the last check before the statement
        change(world)

    monkeypatch.setattr(services, "_check_inputs", then_changed)
    counts = Task.objects.count(), Run.objects.count(), AuditEntry.objects.count()

    # A task for B alone: the creator's own membership is checked apart from the targets'.
    body = task_body(world, organizations=[{"id": world.org_b.pk, "input": plain()}])
    response = api.post("/api/task", body, format="json", **bearer(researcher))

    expected = msg.format(b=world.org_b.pk, ab=world.collab_ab.pk)
    assert (response.status_code, response.json()) == (status, {"msg": expected})
    assert (Task.objects.count(), Run.objects.count(), AuditEntry.objects.count()) == counts


def test_without_a_change_the_task_is_created(api, world, researcher):
    response = api.post("/api/task", task_body(world), format="json", **bearer(researcher))
    assert response.status_code == 201, response.json()
    assert Run.objects.filter(task_id=response.json()["id"]).count() == 2
