"""SQL ``LIKE`` with the raw value, as the vantage6 text filters use it.

``%`` and ``_`` are the caller's wildcards and none are added; a backslash takes the character after it
as it is (PostgreSQL's default escape, which vantage6 inherits, given to SQLite as well); case
sensitivity follows the database.
``like("name", value)`` is a ``Q`` for ``filter()`` (combinable with ``|`` and ``&``), and
``like_filtered`` applies a list's text filters; the ``like`` lookup (``name__like=value``) is
registered on every text column.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Lookup, Model, Q, QuerySet, TextField
from django.db.models.sql.compiler import SQLCompiler

M = TypeVar("M", bound=Model)


@CharField.register_lookup
@TextField.register_lookup
class Like(Lookup):
    lookup_name = "like"

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list]:  # type: ignore[override]  # Lookup's own type
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        escape = "" if connection.vendor == "postgresql" else " ESCAPE '\\'"  # PostgreSQL's default
        return f"{lhs} LIKE {rhs}{escape}", [*lhs_params, *rhs_params]


def like(field: str, value: str) -> Q:
    """Rows whose ``field`` matches the LIKE pattern ``value``."""
    return Q(**{f"{field}__like": value})


def like_filtered(rows: QuerySet[M], filters: dict, *names: str) -> QuerySet[M]:
    """``rows`` matching the LIKE pattern of each text filter ``names`` that ``filters`` gives."""
    for name in names:
        if value := filters.get(name):
            rows = rows.filter(like(name, value))
    return rows
