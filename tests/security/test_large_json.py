"""One small request must not cost a server process much: a JSON body with more values than
``V6_MAX_JSON_VALUES`` (a list of ids is validated one by one, some 20 µs each, and a 16 MiB body holds
millions) and a query string with more fields than Django reads are refused with a 400, and change nothing."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from collaborations.models import Collaboration
from tests import factories
from vantage6 import nesting

pytestmark = pytest.mark.django_db

OVER = settings.MAX_JSON_VALUES + 1


def test_a_body_with_more_values_than_the_bound_is_refused_before_its_validation(api, world):
    root = factories.make_user(world.org_a, "Root")
    ids = [world.org_a.pk, world.org_b.pk, *range(10**6, 10**6 + OVER)]
    body = {"name": "many", "encrypted": False, "organization_ids": ids}
    before = Collaboration.objects.count()

    answer = api.post(
        "/api/collaboration", data=json.dumps(body), content_type="application/json", **factories.bearer(root)
    )

    assert answer.status_code == 400, answer.content
    assert f"more than {settings.MAX_JSON_VALUES} values" in answer.json()["errors"]["_schema"][0]
    assert Collaboration.objects.count() == before


def test_commas_within_strings_are_no_values(api, world):
    factories.make_user(world.org_a, username="somebody")
    body = {"username": "somebody", "password": "wrong", "note": "," * OVER}
    answer = api.post("/api/token/user", data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 401, answer.content  # read, then refused as a wrong login


def test_a_text_alone_is_no_values():
    text = json.dumps("," * OVER)
    assert not nesting.too_many_values(text, json.loads(text))
    listed = json.dumps([["," * OVER]])
    assert not nesting.too_many_values(listed, json.loads(listed))


def test_a_query_with_more_fields_than_django_reads_is_a_400(api, world):
    user = factories.make_user(world.org_a, "Researcher")
    query = "&".join(f"init_org_id={n}" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    answer = api.get(f"/api/task?{query}", **factories.bearer(user))

    assert answer.status_code == 400, answer.content
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in answer.json()["msg"]
