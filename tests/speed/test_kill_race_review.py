"""PostgreSQL: the kill of a task without subtasks is one statement with its audit record, after its
task's lock. Kills racing each other and the nodes' reports: one kill succeeds (the others find the
task finished, 400), it has exactly one audit record, and the stored status follows the runs."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry
from tasks.models import task_status
from tests.conftest import requires_services
from tests.factories import bearer, make_task, make_user
from tests.speed.test_task_status import completion, race, together

pytestmark = [requires_services("postgres"), pytest.mark.django_db(transaction=True)]


def test_kills_racing_each_other_and_the_nodes_leave_one_audit_record_per_kill():
    orgs, collab, nodes = race(3, "kill-review")
    headers = bearer(make_user(orgs[0], "Root"))
    for _ in range(3):
        task = make_task(collab, orgs[0], *orgs)
        runs = {run.organization_id: run for run in task.runs.all()}
        kills: list[int] = []

        def kill(api, pk=task.pk, kills=kills):
            response = api.post("/api/kill/task", {"id": pk}, format="json", **headers)
            kills.append(response.status_code)
            return response

        reports = [completion(node, runs[node.organization_id]) for node in nodes[1:]]

        answers = together([kill, kill, kill, *reports])

        assert set(answers) <= {200, 400}, answers
        audited = AuditEntry.objects.filter(action="task.kill", object_id=task.pk).count()
        task.refresh_from_db()
        assert (task.status, task.finished_at) == task_status(task.runs.values_list("status", "finished_at"))
        # The first kill to lock the task kills its open runs (at least the first node's never reports).
        assert kills.count(200) == audited == 1, (kills, answers)
        assert task.status == "killed by user"
