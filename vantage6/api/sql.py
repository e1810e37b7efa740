"""Scalar subqueries written once as SQL text, for hot queries whose ORM form is costly to build."""

from __future__ import annotations

from collections.abc import Callable

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, F, Field

# Builds the SQL of a subquery for one database connection: ``{outer}`` stands for the outer row's
# primary key column; returns the text and its parameters.
SqlBuilder = Callable[[BaseDatabaseWrapper], tuple[str, tuple]]

_built: dict[tuple[SqlBuilder, str], tuple[str, tuple]] = {}


class CorrelatedSQL(Expression):
    """A subquery correlated with the primary key of the outer row, from SQL built once per backend.

    Resolving the ORM form of a subquery with aggregates and conditions takes hundreds of expression
    calls on every request; this one resolves a single column reference, whatever alias the outer
    table has.
    """

    contains_aggregate = False
    contains_over_clause = False

    def __init__(self, build: SqlBuilder, output_field: Field) -> None:
        super().__init__(output_field=output_field)
        self.build = build
        self.outer = F("pk")

    def get_source_expressions(self) -> list:
        return [self.outer]

    def set_source_expressions(self, exprs: list) -> None:
        (self.outer,) = exprs

    def as_sql(self, compiler, connection: BaseDatabaseWrapper) -> tuple[str, tuple]:
        outer_sql, outer_params = compiler.compile(self.outer)
        assert not outer_params, "the outer key is a plain column"
        key = (self.build, connection.vendor)
        if key not in _built:
            _built[key] = self.build(connection)
        sql, params = _built[key]
        return f"({sql.replace('{outer}', outer_sql)})", params


def string_agg(connection: BaseDatabaseWrapper, expression: str, separator: str) -> str:
    """The aggregate concatenating ``expression`` over the rows, on SQLite and PostgreSQL."""
    if connection.vendor == "postgresql":
        return f"STRING_AGG({expression}, '{separator}')"
    return f"GROUP_CONCAT({expression}, '{separator}')"
