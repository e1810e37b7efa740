"""A node's run update that is refused after its caller was read (inside the update's transaction) still
records the node's sign of life: ``last_seen`` is written once the request's work is over, not rolled back
with the refused update, and the process does not believe it written when it was not."""

from __future__ import annotations

import pytest
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
