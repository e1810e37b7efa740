"""The bytes of stored text, as SQL expressions: what bounds a page of rows with large fields, and the
indexes that let a list find its rows too large for a page without reading the others."""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BigIntegerField, Expression, Func
from django.db.models.sql.compiler import SQLCompiler


class OctetLength(Func):
    """The bytes of a text column, 0 for NULL. PostgreSQL reads the size of a stored (TOASTed) value
    without reading the value."""

    template = "COALESCE(OCTET_LENGTH(%(expressions)s), 0)"
    output_field = BigIntegerField()

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="COALESCE(LENGTH(CAST(%(expressions)s AS BLOB)), 0)"
        )


def bytes_of(*fields: str) -> Expression:
    """The bytes of a row's ``fields`` together, as a page's bound counts them (with no parameter in it,
    so that an index on the same expression serves a query's condition on it)."""
    total: Expression = OctetLength(fields[0])
    for name in fields[1:]:
        total = total + OctetLength(name)
    return total
