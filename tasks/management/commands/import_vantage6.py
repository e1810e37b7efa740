"""``manage.py import_vantage6 SOURCE_URL [--dry-run]``: take over the database of a vantage6 4.x server."""

from __future__ import annotations

from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor

from tasks.management.vantage6_import import (
    ImportRefused,
    Plan,
    build_plan,
    catalogue_rules,
    not_empty_message,
    target_contents,
    write_plan,
)
from tasks.management.vantage6_source import Source, SourceError


def _ensure_target_database() -> None:
    """Create the PostgreSQL database of V6_DATABASE_URL when it does not exist yet."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
    except OperationalError:
        if connection.vendor != "postgresql":
            raise
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(connection.settings_dict['NAME'])}")


def _target_migrated() -> bool:
    """Whether the target is migrated; looking does not create it (a dry run writes nothing)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "sqlite" and not Path(connection.settings_dict["NAME"]).is_file():
        return False
    try:
        connection.ensure_connection()
    except OperationalError:
        return False  # a PostgreSQL database that does not exist yet
    executor = MigrationExecutor(connection)
    return not executor.migration_plan(executor.loader.graph.leaf_nodes())


class Command(BaseCommand):
    help = (
        "Copy the database of a vantage6 4.x server (its `uri`: sqlite:///... or postgresql://...) into "
        "the database of V6_DATABASE_URL, which must be new or empty. Ids, passwords, two-factor secrets "
        "and node API keys are kept. Stop the vantage6 server first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="the vantage6 server's database URL (read-only access is enough)")
        parser.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")

    def handle(self, *_args: object, source: str, dry_run: bool, **_options: object) -> None:
        try:
            reader = Source(source)
        except SourceError as exc:
            raise CommandError(f"{exc}; nothing was written") from None
        try:
            self._run(reader, dry_run)
        except (SourceError, ImportRefused) as exc:
            raise CommandError(f"{exc}; nothing was written") from None
        finally:
            reader.close()

    def _run(self, reader: Source, dry_run: bool) -> None:
        migrated = dry_run and _target_migrated()
        if dry_run:
            if migrated and (contents := target_contents()):
                raise ImportRefused(not_empty_message(contents))
        else:
            _ensure_target_database()
            call_command("migrate", interactive=False, verbosity=0)
            migrated = True
            if contents := target_contents():
                raise ImportRefused(not_empty_message(contents))
        self.stdout.write("Reading the vantage6 database...")
        plan = build_plan(reader, catalogue_rules(migrated), self.stdout.write)
        if dry_run:
            self._summary(plan, {m._meta.db_table: len(objs) for m, objs in plan.rows.items()}, "Would copy")
            self.stdout.write(self.style.SUCCESS("Dry run: everything can be imported; nothing was written."))
            return
        self.stdout.write("Writing...")
        try:
            copied = write_plan(plan, self.stdout.write)
        except DatabaseError as exc:
            # The checks before writing should leave nothing for the database to refuse.
            raise ImportRefused(f"the target database refused a row: {str(exc).strip()}") from None
        self._summary(plan, copied, "Copied")
        self.stdout.write(
            self.style.SUCCESS(
                "Imported. Users log in with their passwords, nodes with the API keys in their configuration "
                "files; tokens of the old server are not valid here."
            )
        )

    def _summary(self, plan: Plan, copied: dict[str, int], title: str) -> None:
        self.stdout.write(f"{title}:")
        for table, n in copied.items():
            self.stdout.write(f"  {table}: {n}")
        for reason, n in sorted(plan.skipped.items()):
            self.stdout.write(f"  left out, {reason}: {n}")
        for name, scope, operation in sorted(plan.unknown_rules):
            self.stdout.write(f"  left out, unknown rule: {name} {scope} {operation}")
