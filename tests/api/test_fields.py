"""Timestamps and references as vantage6 writes them, under the configured API path."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations

from collaborations.models import Collaboration, Organization
from nodes.models import Node
from tasks.models import Task
from tests.factories import bearer, make_user
from vantage6.api.fields import MAX_ID, format_datetime
from vantage6.api.references import list_link, ref


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 1, 1, 10, 0, 0), "2024-01-01T10:00:00"),
        (datetime(2026, 11, 27, 18, 25, 3, 795264), "2026-11-27T18:25:03.795264"),
        (datetime(2024, 1, 1, 10, 0, 0, tzinfo=UTC), "2024-01-01T10:00:00"),
        (
            datetime(2024, 1, 1, 12, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),
            "2024-01-01T10:30:00.000005",
        ),
        (datetime(2024, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2023-12-31T23:30:00"),
        (None, None),
    ],
)
def test_format_datetime_is_naive_utc_iso(value, expected):
    assert format_datetime(value) == expected


def test_to_one_reference(settings):
    settings.API_PATH = "/api"
    assert ref("node", 3) == {"id": 3, "link": "/api/node/3", "methods": ["GET", "PATCH", "DELETE"]}
    assert ref("task", 5)["methods"] == ["GET", "DELETE"]
    assert ref("run", 5)["methods"] == ["GET", "PATCH"]
    assert ref("organization", None) is None


def test_references_follow_the_api_path(settings):
    settings.API_PATH = "/server/v6"
    assert ref("user", 1)["link"] == "/server/v6/user/1"
    assert list_link("rule", role_id=2) == "/server/v6/rule?role_id=2"
    settings.API_PATH = ""
    assert ref("user", 1)["link"] == "/user/1"


def test_references_in_api_responses(api, auth):
    rule = api.get("/api/rule?per_page=1", **auth).json()["data"][0]
    assert rule["users"] == f"/api/user?rule_id={rule['id']}"


def test_the_whole_api_moves_with_v6_api_path(tmp_path):
    """A server started with V6_API_PATH serves its routes, links and references under that path."""
    script = (
        "import django; django.setup();"
        "from django.test import Client; c = Client();"
        "print(c.get('/v6/version').status_code, c.get('/api/version').status_code,"
        " c.get('/v6/rule').json()['msg'])"
    )
    env = {**os.environ, "V6_API_PATH": "/v6/", "V6_DATA_DIR": str(tmp_path), "V6_DATABASE_URL": ""}
    env["DJANGO_SETTINGS_MODULE"] = "vantage6.settings"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 2) == ["200", "404", "Missing Authorization Header\n"]


# Every id in a body is checked against the id columns' range: one past it is a 400 naming the field.
BEYOND_ID_COLUMNS = MAX_ID + 1
PROJECT_APPS = {"accounts", "collaborations", "nodes", "tasks"}
TOO_BIG_IDS = [
    ("/api/collaboration/{collab}/organization", {"id": BEYOND_ID_COLUMNS}, "id"),
    ("/api/collaboration/{collab}/node", {"id": BEYOND_ID_COLUMNS}, "id"),
    (
        "/api/collaboration",
        {"name": "X", "encrypted": False, "organization_ids": [BEYOND_ID_COLUMNS]},
        "organization_ids",
    ),
    (
        "/api/study",
        {"name": "S", "collaboration_id": BEYOND_ID_COLUMNS, "organization_ids": [1]},
        "collaboration_id",
    ),
    ("/api/node", {"collaboration_id": BEYOND_ID_COLUMNS}, "collaboration_id"),
    (
        "/api/user",
        {"username": "u", "password": "Password123!", "roles": [BEYOND_ID_COLUMNS]},
        "roles",
    ),
    (
        "/api/task",
        {"image": "x", "collaboration_id": BEYOND_ID_COLUMNS, "organizations": [{"id": 1, "input": "e30="}]},
        "collaboration_id",
    ),
]


@pytest.mark.parametrize(("path", "body", "field"), TOO_BIG_IDS, ids=[c[0] for c in TOO_BIG_IDS])
def test_an_id_beyond_the_id_columns_is_a_400_that_changes_nothing(world, api, path, body, field):
    root = make_user(world.org_a, "Root")
    tables = (Collaboration, Organization, Node, Task)
    before = [table.objects.count() for table in tables]
    response = api.post(path.format(collab=world.collab_ab.pk), body, format="json", **bearer(root))
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert [table.objects.count() for table in tables] == before


def test_max_id_is_the_limit_of_every_id_column():
    """The integer ids of every table fit ``MAX_ID`` on PostgreSQL (2**31 - 1 for an AutoField); a table
    with larger ids (a BigAutoField) needs a larger limit in ``IdField``."""
    for model in apps.get_models():
        if model._meta.app_label in PROJECT_APPS:
            pk = model._meta.pk
            column = pk.target_field if pk.is_relation else pk
            if isinstance(column, models.IntegerField):
                assert BaseDatabaseOperations.integer_field_ranges[column.get_internal_type()][1] == MAX_ID, (
                    model
                )
