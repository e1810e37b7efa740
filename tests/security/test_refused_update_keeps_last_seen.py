"""A node's run update that is refused after its caller was read (inside the update's transaction) still
records the node's sign of life: ``last_seen`` is written once the request's work is over, not rolled back
with the refused update, and the process does not believe it written when it was not."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Authenticatable
from tasks.models import Run
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db(transaction=True)  # the update's own transaction, as the server runs it


def node_seen_by_root(api, org, node) -> str | None:
    response = api.get(f"/api/node/{node.pk}", **bearer(make_user(org, "Root")))
    assert response.status_code == 200, response.content
    return response.json()["last_seen"]


@pytest.mark.parametrize("refusal", ["finished run", "another organization's run"])
def test_a_refused_run_update_keeps_the_nodes_last_seen(api, network, refusal):
    org, _, node, other_node, task = network
    run = task.runs.get(organization=org)
    if refusal == "finished run":
        Run.objects.filter(pk=run.pk).update(status="completed", finished_at=timezone.now())
        expected = 400
    else:
        run = task.runs.get(organization=other_node.organization)
        expected = 401
    headers = bearer(node)
    assert Authenticatable.objects.get(pk=node.pk).last_seen is None
    before = Run.objects.values().get(pk=run.pk)

    body = {"status": "active", "result": "late"}
    refused = api.patch(f"/api/run/{run.pk}", body, format="json", **headers)

    assert refused.status_code == expected, refused.content
    assert Run.objects.values().get(pk=run.pk) == before
    assert node_seen_by_root(api, org, node) is not None


# A database that refuses the write of ``last_seen`` only (a trigger), and takes it back.
REFUSE_LAST_SEEN = {
    "sqlite": (
        [
            "CREATE TRIGGER refuse_last_seen BEFORE UPDATE OF last_seen ON authenticatable "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ],
        ["DROP TRIGGER refuse_last_seen"],
    ),
    "postgresql": (
        [
            "CREATE FUNCTION refuse_last_seen() RETURNS trigger AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_last_seen BEFORE UPDATE OF last_seen ON authenticatable "
            "FOR EACH ROW EXECUTE FUNCTION refuse_last_seen()",
        ],
        ["DROP TRIGGER refuse_last_seen ON authenticatable", "DROP FUNCTION refuse_last_seen()"],
    ),
}


@pytest.fixture
def last_seen_refused():
    create, drop = REFUSE_LAST_SEEN[connection.vendor]
    with connection.cursor() as cursor:
        for statement in create:
            cursor.execute(statement)
    yield
    with connection.cursor() as cursor:
        for statement in drop:
            cursor.execute(statement)


@pytest.mark.usefixtures("last_seen_refused")
def test_an_accepted_update_is_answered_as_done_when_last_seen_cannot_be_written(api, network):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    headers = bearer(node)

    response = api.patch(
        f"/api/run/{run.pk}", {"status": "completed", "result": "r"}, format="json", **headers
    )

    assert response.status_code == 200, response.content
    assert (Run.objects.get(pk=run.pk).status, Run.objects.get(pk=run.pk).result) == ("completed", "r")
    assert Authenticatable.objects.get(pk=node.pk).last_seen is None
