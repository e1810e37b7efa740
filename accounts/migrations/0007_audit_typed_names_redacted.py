"""Failed logins at unknown accounts recorded before the digest kept the name as typed, and people
type passwords there: such entries get the digest in place of the name, as they are written now.

The audit trail is append-only. This migration lifts the database's guard inside its own transaction,
which keeps every other writer of the table out until the guard is back (PostgreSQL: ALTER TABLE locks
the table; SQLite: one writer at a time), and changes only the ``data`` of those entries.
"""

import importlib

from django.db import migrations

from accounts.login import name_digest

_trail = importlib.import_module("accounts.migrations.0004_audit_trail")
LIFT = {
    "postgresql": "ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only",
    "sqlite": _trail.SQLITE_UNGUARD,
}
RESTORE = {
    "postgresql": "ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only",
    "sqlite": _trail.SQLITE_GUARD,
}


def _typed_names_redacted(apps, schema_editor) -> None:
    entries = apps.get_model("accounts", "AuditEntry").objects
    typed = entries.filter(action="user.login_failed", data__has_key="username")
    if not typed.exists():
        return
    vendor = schema_editor.connection.vendor
    if vendor in LIFT:
        schema_editor.execute(LIFT[vendor])
    for pk, data in list(typed.values_list("pk", "data")):
        redacted = {key: value for key, value in data.items() if key != "username"}
        redacted["name_digest"] = name_digest(str(data["username"]))
        entries.filter(pk=pk).update(data=redacted)
    if vendor in RESTORE:
        schema_editor.execute(RESTORE[vendor])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_client_limit"),
    ]

    operations = [
        migrations.RunPython(_typed_names_redacted, migrations.RunPython.noop),
    ]
