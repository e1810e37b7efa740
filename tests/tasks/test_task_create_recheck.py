"""A membership that ends after the checks of a new task and is back before its re-check (the writes of
the task require the memberships, on PostgreSQL in their one statement): no task, a 409 that asks the
client to try again, and the same request is then answered with the task."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry
from collaborations.models import Collaboration
from tasks import services
from tasks.models import Run, Task, TaskDatabase
from tests.factories import bearer
from tests.tasks.conftest import task_body

pytestmark = pytest.mark.django_db

MEMBERSHIPS = Collaboration.organizations.through.objects


@pytest.mark.parametrize("org", ["org_a", "org_b"], ids=["creator", "target"])
def test_a_membership_ended_and_back_before_the_recheck_is_a_409_to_try_again(
    api, world, researcher, monkeypatch, org
):
    membership = {"collaboration_id": world.collab_ab.pk, "organization_id": getattr(world, org).pk}
    checked, recheck = services._check_inputs, services._membership_changed

    def then_left(*args, **kwargs):
        checked(*args, **kwargs)  # the last check before the statement
        assert MEMBERSHIPS.filter(**membership).delete()[0] == 1

    def back_then_recheck(*args, **kwargs):
        MEMBERSHIPS.create(**membership)
        return recheck(*args, **kwargs)

    monkeypatch.setattr(services, "_check_inputs", then_left)
    monkeypatch.setattr(services, "_membership_changed", back_then_recheck)
    counts = (
        Task.objects.count(),
        Run.objects.count(),
        TaskDatabase.objects.count(),
        AuditEntry.objects.count(),
    )

    response = api.post("/api/task", task_body(world), format="json", **bearer(researcher))

    assert (response.status_code, response.json()) == (
        409,
        {"msg": "The collaboration's members changed while the task was created; try again"},
    )
    assert (
        Task.objects.count(),
        Run.objects.count(),
        TaskDatabase.objects.count(),
        AuditEntry.objects.count(),
    ) == counts
    assert MEMBERSHIPS.filter(**membership).exists()

    monkeypatch.undo()
    again = api.post("/api/task", task_body(world), format="json", **bearer(researcher))

    assert again.status_code == 201, again.json()
    assert Run.objects.filter(task_id=again.json()["id"]).count() == 2
