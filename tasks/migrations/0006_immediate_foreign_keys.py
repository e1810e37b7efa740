"""SQLite: the foreign keys of tables made before are checked by each statement, as those of new tables
(vantage6.db.sqlite3): a writer whose row points at a row deleted meanwhile fails alone, not the other
writers committed with it. Changes the tables' definitions only; nothing on PostgreSQL."""

from django.db import migrations


def immediate_foreign_keys(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    from vantage6.db.sqlite3.base import make_foreign_keys_immediate

    make_foreign_keys_immediate(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0005_count_existing_blobs"),
    ]

    operations = [migrations.RunPython(immediate_foreign_keys, migrations.RunPython.noop)]
