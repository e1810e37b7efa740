"""PostgreSQL: a run's large text columns are stored lz4-compressed where the server has lz4 (a 10 KiB result
written in about two thirds of pglz's time)."""

from __future__ import annotations

import base64
import importlib

import pytest
from django.db import DatabaseError, connection, transaction

from tasks.models import Run
from tests.factories import bearer, make_run, make_task

pytestmark = pytest.mark.django_db


def _server_has_lz4() -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE lz4_probe (value text COMPRESSION lz4)")
            transaction.set_rollback(True)
    except DatabaseError:
        return False
    return True


def test_a_node_s_result_is_stored_lz4_compressed(api, world):
    if connection.vendor != "postgresql" or not _server_has_lz4():
        pytest.skip("lz4 compression is PostgreSQL's (14+, built with lz4)")
    run = make_run(make_task(world.collab_ab, world.org_a), world.org_a)
    result = base64.b64encode(b"r" * 7680).decode()  # the 10 KiB result of the benchmark: compressible
    response = api.patch(
        f"/api/run/{run.pk}", {"result": result, "log": "x" * 10_000, "status": "completed",
                               "finished_at": "2024-05-01T12:30:00Z"}, format="json", **bearer(world.node_a),
    )  # fmt: skip
    assert response.status_code == 200, response.json()
    assert Run.objects.get(pk=run.pk).result == result
    with connection.cursor() as cursor:
        columns = "pg_column_compression(result), pg_column_compression(log)"
        cursor.execute(f"SELECT {columns} FROM run WHERE id = %s", [run.pk])
        assert cursor.fetchone() == ("lz4", "lz4")


def _compression_of_result() -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'run'::regclass AND attname = 'result'"
        )
        return cursor.fetchone()[0] or None  # '' is the server's default


def test_a_server_that_refuses_the_method_keeps_its_compression():
    if connection.vendor != "postgresql":
        pytest.skip("compression methods are PostgreSQL's")
    from django.apps import apps

    migration = importlib.import_module("tasks.migrations.0007_run_text_lz4")
    before = _compression_of_result()
    with transaction.atomic(), connection.schema_editor(atomic=False) as editor:
        migration._set_compression(apps, editor, "no_such_method")  # refused, as lz4 by a server without it
        assert _compression_of_result() == before  # and the migration's transaction goes on
    with connection.schema_editor() as editor:
        migration.use_default(apps, editor)  # the migration reversed
    assert _compression_of_result() is None
    if _server_has_lz4():
        with connection.schema_editor() as editor:
            migration.use_lz4(apps, editor)
        assert _compression_of_result() == "l"
