"""Entries written by earlier versions that kept a name typed at an unknown account (often a password):
the migration leaves none of them, changes nothing else, and the trail stays append-only."""

from __future__ import annotations

import json

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from accounts.login import name_digest
from accounts.models import AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "Tr0ub4dor&3-typed-as-a-name"
BEFORE, REDACTION = ("accounts", "0006_client_limit"), ("accounts", "0007_audit_typed_names_redacted")


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


@pytest.fixture(autouse=True)
def _latest_schema_after():
    """The later tests need every migration, also those after the ones tested here."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _insert(action: str, data: dict, object_id: int | None = None) -> int:
    """An entry as the earlier versions wrote it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_entry (created_at, actor_type, action, object_type, object_id, data) "
            "VALUES (CURRENT_TIMESTAMP, 'anonymous', %s, '', %s, %s)",
            [action, object_id, json.dumps(data)],
        )
    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()


def _rows() -> dict[int, tuple]:
    return {row[0]: row[1:] for row in AuditEntry.objects.values_list()}


def test_the_migration_replaces_typed_names_by_their_digest():
    _migrate(BEFORE)
    try:
        typed = _insert("user.login_failed", {"username": SECRET, "reason": "unknown user"})
        kept = {
            _insert("user.login_failed", {"reason": "password"}, object_id=1),
            _insert("user.create", {"username": "alice"}, object_id=2),
            _insert("user.login_failed", {"reason": "unknown user", "name_digest": "0123456789abcdef"}),
        }
        before = _rows()
    finally:
        _migrate(REDACTION)

    after = _rows()
    assert SECRET not in json.dumps(list(AuditEntry.objects.values_list("data", flat=True)))
    assert after[typed][-1] == {"reason": "unknown user", "name_digest": name_digest(SECRET)}
    assert after[typed][:-1] == before[typed][:-1]
    assert {pk: after[pk] for pk in kept} == {pk: before[pk] for pk in kept}
    # The guard is back: the migration may change those entries, nothing may change them later.
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE audit_entry SET data = %s WHERE id = %s", [json.dumps({}), typed])
    assert _rows() == after
