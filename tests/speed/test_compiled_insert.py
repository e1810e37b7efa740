"""The compiled insert's own preparation of values writes the rows the ORM's preparation writes."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from accounts.audit import _insert_audit_entry
from accounts.models import AuditAction, AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = [column for column in _insert_audit_entry.columns if column != "created_at"]

VALUES = [
    {
        "actor_type": "node",
        "actor_id": 3,
        "actor_organization_id": 7,
        "action": AuditAction("run.update"),
        "object_type": "run",
        "object_id": 11,
        "object_organization_id": 7,
        "data": {},
    },
    {
        "actor_type": "system",
        "actor_id": None,
        "actor_organization_id": None,
        "action": AuditAction("task.kill"),
        "object_type": "",
        "object_id": None,
        "object_organization_id": None,
        "data": {"status": "killed", "n": [1, 2.5, None, True], "é": "ünïcode \" ' \\ %s"},
    },
    {
        "actor_type": "user",
        "actor_id": 2**31 - 1,
        "actor_organization_id": 0,
        "action": "user.create",
        "object_type": "user",
        "object_id": -(2**31),
        "object_organization_id": 1,
        "data": {"x": {"y": []}},
    },
]


def stored() -> list[tuple]:
    """The rows as the database holds them (the JSON as text, the time aside)."""
    with connection.cursor() as cursor:
        cast = "::text" if connection.vendor == "postgresql" else ""
        columns = ", ".join(f"{column}{cast}" if column == "data" else column for column in COLUMNS)
        cursor.execute(f"SELECT {columns}, created_at FROM audit_entry ORDER BY id")
        return cursor.fetchall()


@pytest.mark.parametrize("values", VALUES)
def test_a_deferred_and_a_conditional_audit_record_are_the_rows_the_orm_writes(values):
    AuditEntry.objects.create(**values)
    with transaction.atomic():
        _insert_audit_entry.later(**values)
    sql, params = _insert_audit_entry.if_changed(**values)  # as a write after a statement's change
    with connection.cursor() as cursor:
        cursor.execute(sql.replace(" WHERE EXISTS (SELECT 1 FROM changed)", ""), params)
    orm, later, conditional = stored()
    assert _insert_audit_entry._preparers[connection.vendor] is not None  # written without an instance
    assert orm[:-1] == later[:-1] == conditional[:-1]
    assert type(orm[-1]) is type(later[-1]) is type(conditional[-1])
    assert orm[-1] <= later[-1] <= conditional[-1]
