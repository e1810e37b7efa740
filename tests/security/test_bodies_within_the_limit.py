"""A JSON body larger than Django's own default bound (2.5 MiB) but within the server's limit
(``V6_MAX_BODY_MB``, which the HTTP server applies before the application): it is read like any other,
from anyone, not a 500 (an algorithm's result of a few MiB included)."""

from __future__ import annotations

import json

import pytest

from tasks.models import Run
from tests.factories import bearer, make_task

pytestmark = pytest.mark.django_db

MIB = 2**20


def test_an_anonymous_login_with_a_large_body_is_answered_as_any_login(api):
    body = json.dumps({"username": "someone", "password": "x" * (3 * MIB)})
    response = api.generic("POST", "/api/token/user", body, content_type="application/json")
    assert response.status_code in (400, 401), response.content


def test_a_node_stores_a_result_of_a_few_mib(api, world):
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    run = task.runs.get()
    result = "A" * (3 * MIB)
    response = api.patch(f"/api/run/{run.pk}", {"result": result}, format="json", **bearer(world.node_a))
    assert response.status_code == 200, response.content[:200]
    assert Run.objects.get(pk=run.pk).result == result


def test_a_result_just_within_the_server_s_limit_is_stored(api, world, settings):
    """The bound is the server's limit itself, not some smaller one."""
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    run = task.runs.get()
    result = "A" * (settings.MAX_BODY_BYTES - 100)  # the rest of the body is '{"result": ""}'
    response = api.patch(f"/api/run/{run.pk}", {"result": result}, format="json", **bearer(world.node_a))
    assert response.status_code == 200, response.content[:200]
    assert len(Run.objects.get(pk=run.pk).result) == len(result)
