"""A node's run update reads its caller (the node's row) in the statement that reads the run, after the
task's lock, which carries the token's check: every way a caller is no longer valid, never was, or
may not write the run is refused as before, with nothing written, and a refused token takes no lock."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import AuditEntry, Authenticatable, LoginSession
from tasks.models import Run, Task
from tests.conftest import requires_services
from tests.factories import bearer, make_collab, make_node, make_org, make_user
from tests.security.test_caller_checked_by_the_write import no_longer_valid
from tests.tasks.conftest import container_headers_from
from tests.tasks.test_kill_lock import LockHolder

pytestmark = pytest.mark.django_db

NOT_YOURS = "This is not your algorithm run to update!"


def patch(api, headers, run, body=None):
    body = {"status": "active"} if body is None else body
    return api.patch(f"/api/run/{run.pk}", body, format="json", **headers)


def stored(run) -> tuple:
    """What a run update would change: the run's fields, its task's status, the update's audit records."""
    run.refresh_from_db()
    task = Task.objects.get(pk=run.task_id)
    updates = AuditEntry.objects.filter(action="run.update").count()
    return run.status, run.started_at, run.result, run.log, task.status, updates


def test_a_node_updates_its_run_and_is_answered_with_itself(api, network):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    response = patch(api, bearer(node), run, {"status": "completed", "result": "r", "log": "ok"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["log"]) == ("completed", "ok")
    assert (body["node"]["id"], body["node"]["name"]) == (node.pk, "n")
    assert Run.objects.get(pk=run.pk).result == "r"
    entry = AuditEntry.objects.get(action="run.update")
    assert (entry.actor_type, entry.actor_id, entry.actor_organization_id) == ("node", node.pk, org.pk)
    assert Authenticatable.objects.get(pk=node.pk).last_seen is not None


@pytest.mark.parametrize("attack", ["revoked login", "older generation", "unknown login", "deleted node"])
def test_an_update_by_a_node_no_longer_valid_is_refused_and_nothing_is_written(api, network, attack):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    headers = no_longer_valid(node, attack, lambda headers: patch(api, headers, run).status_code == 200)
    before = stored(run)
    response = patch(api, headers, run, {"status": "completed", "result": "r"})
    assert response.status_code == 401, response.content
    assert stored(run) == before


def test_a_node_may_not_update_another_organizations_or_collaborations_run(api, network):
    org, _, node, other_node, task = network
    theirs = task.runs.get(organization=other_node.organization)
    elsewhere = make_org("q")
    far_node, _ = make_node(elsewhere, make_collab(elsewhere, name="d"), "far")
    for caller, run in ((node, theirs), (far_node, task.runs.get(organization=org))):
        before = stored(run)
        response = patch(api, bearer(caller), run)
        assert response.status_code == 401, response.content
        assert response.json()["msg"] == NOT_YOURS
        assert stored(run) == before


def test_a_user_or_a_container_token_may_not_update_a_run(api, network):
    org, _, _, other_node, task = network
    run = task.runs.get(organization=org)
    before = stored(run)
    refused = patch(api, bearer(make_user(org, "Root")), run)
    assert refused.status_code == 401
    assert refused.json()["msg"] == "This endpoint is not available to users"
    # A container of the task, at the other node: neither its own nor the other run.
    container = container_headers_from(api, other_node, task)
    for target in (run, task.runs.get(organization=other_node.organization)):
        refused = patch(api, container, target)
        assert refused.status_code == 401, refused.content
        assert refused.json()["msg"] == "This endpoint is not available to containers"
    assert stored(run) == before


@pytest.mark.parametrize("end", ["finished run", "killed task"])
def test_a_finished_run_is_not_updated(api, network, end):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    headers = bearer(node)
    if end == "finished run":
        finished = patch(api, headers, run, {"status": "completed", "finished_at": "2026-01-01T00:00:00"})
        assert finished.status_code == 200, finished.content
    else:
        killed = api.post("/api/kill/task", {"id": task.pk}, format="json", **bearer(make_user(org, "Root")))
        assert killed.status_code == 200, killed.content
    before = stored(run)
    response = patch(api, headers, run, {"status": "active", "result": "late"})
    assert response.status_code == 400, response.content
    assert response.json()["msg"] == "Cannot update an already finished algorithm run!"
    assert stored(run) == before


def test_a_login_the_database_no_longer_has_is_judged_as_the_caller_lookup_judges_it(api, network):
    # The statement's check of the token is the stricter form (a login deleted since this process last
    # saw it current); the Python check passes it, so the run is read again after a lock of its own.
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    headers = bearer(node)
    assert patch(api, headers, run).status_code == 200
    LoginSession.objects.filter(identity_id=node.pk).delete()
    response = patch(api, headers, run, {"status": "completed", "result": "r"})
    assert response.status_code == 200, response.content
    assert stored(run)[:3] == ("completed", run.started_at, "r")


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_an_update_by_a_token_no_longer_valid_takes_no_lock(api, network):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    headers = bearer(node)
    assert patch(api, headers, run).status_code == 200  # the statement's path, as a usual caller's
    LoginSession.objects.filter(identity_id=node.pk).update(revoked_at=timezone.now())
    holder = LockHolder(task.pk)
    holder.start()
    try:
        assert holder.locked.wait(10)
        response = patch(api, headers, run, {"status": "completed"})
    finally:
        holder.done.set()
        holder.join(40)
    assert response.status_code == 401, response.content
    assert not holder.waiter_seen, "the refused update waited for the task's lock"
    assert Run.objects.get(pk=run.pk).status == "active"
