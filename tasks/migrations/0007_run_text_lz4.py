"""PostgreSQL: the run's large text columns (input, result, log) compressed with lz4 rather than the default
pglz where the server has it (PostgreSQL 14+ built with lz4): a 10 KiB result is written in about two thirds
of the time, and read back faster. Values already stored keep their compression. A server that refuses it
(older, or built without lz4) keeps its default; nothing on SQLite."""

from django.db import DatabaseError, migrations, transaction

RUN_TEXT_COLUMNS = ("input", "result", "log")


def _set_compression(apps, schema_editor, method: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    table = quote(apps.get_model("tasks", "Run")._meta.db_table)
    for column in RUN_TEXT_COLUMNS:
        try:
            with transaction.atomic(using=schema_editor.connection.alias):  # a refusal undoes this one only
                schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {quote(column)} SET COMPRESSION {method}")
        except DatabaseError:
            return  # no lz4 on this server: the default stays


def use_lz4(apps, schema_editor) -> None:
    _set_compression(apps, schema_editor, "lz4")


def use_default(apps, schema_editor) -> None:
    _set_compression(apps, schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0006_immediate_foreign_keys"),
    ]

    operations = [migrations.RunPython(use_lz4, use_default)]
