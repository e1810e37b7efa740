"""Helpers of the management commands of every app."""

from __future__ import annotations


class FixtureError(Exception):
    """A command cannot do its work; ``problems`` name each reason (e.g. the entry and field of a fixture)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def require_migrated_database() -> None:
    """FixtureError unless the database has every migration (a first start runs ``bootstrap``)."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise FixtureError(["the database is not migrated yet: run `python manage.py bootstrap` first"])
