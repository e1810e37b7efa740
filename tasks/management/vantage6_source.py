"""Reading the database of a vantage6 4.x server, read-only, with the standard drivers (no SQLAlchemy).

The source is given as the server's ``uri`` setting: ``sqlite:///relative.db``, ``sqlite:////abs.db``
or ``postgresql://user:password@host:port/database``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg2

# The tables and columns of vantage6 4.15 (the last 4.x release). A table or column of an earlier 4.x
# release that is missing reads as empty / null; one that is not listed here means a newer schema.
SCHEMA: dict[str, tuple[str, ...]] = {
    "authenticatable": ("id", "type", "ip", "last_seen", "status"),
    "organization": ("id", "name", "domain", "address1", "address2", "zipcode", "country", "_public_key"),
    "collaboration": ("id", "name", "encrypted"),
    "Member": ("organization_id", "collaboration_id"),
    "study": ("id", "name", "collaboration_id"),
    "StudyMember": ("organization_id", "study_id"),
    "algorithmstore": ("id", "name", "url", "collaboration_id"),
    "rule": ("id", "name", "operation", "scope", "description"),
    "role": ("id", "name", "description", "organization_id", "is_default_role"),
    "role_rule_association": ("role_id", "rule_id"),
    "user": (
        "id", "username", "password", "firstname", "lastname", "email", "organization_id",
        "failed_login_attempts", "last_login_attempt", "otp_secret", "last_email_failed_login_sent",
        "last_email_recover_password_sent",
    ),
    "Permission": ("role_id", "user_id"),
    "UserPermission": ("rule_id", "user_id"),
    "node": ("id", "name", "api_key", "collaboration_id", "organization_id"),
    "nodeconfig": ("id", "node_id", "key", "value"),
    "task": (
        "id", "name", "description", "image", "collaboration_id", "study_id", "job_id", "parent_id",
        "init_org_id", "init_user_id", "created_at", "algorithm_store_id",
    ),
    "taskdatabase": ("id", "task_id", "database", "parameters"),
    "run": (
        "id", "input", "task_id", "organization_id", "result", "assigned_at", "started_at", "finished_at",
        "status", "log", "cleanup_at", "blob_storage_used",
    ),
    "algorithmport": ("id", "port", "run_id", "label"),
}  # fmt: skip
# Present in every vantage6 4.x database: without them it is not one.
CORE_TABLES = (
    "authenticatable", "organization", "collaboration", "Member", "rule", "role", "user", "node", "task",
    "run",
)  # fmt: skip
DATETIME_COLUMNS = frozenset(
    {"last_seen", "last_login_attempt", "last_email_failed_login_sent", "last_email_recover_password_sent",
     "created_at", "assigned_at", "started_at", "finished_at", "cleanup_at"}
)  # fmt: skip


class SourceError(Exception):
    """The source cannot be read, or is not a vantage6 4.x database."""


def _connect(url: str) -> tuple[object, str]:
    """A read-only DB-API connection and its parameter style (``?`` or ``%s``)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        if parts.netloc or len(parts.path) < 2:
            raise SourceError("an SQLite URL looks like sqlite:///relative.db or sqlite:////absolute.db")
        path = Path(unquote(parts.path[1:])).resolve()
        if not path.is_file():
            raise SourceError(f"no SQLite database at {path}")
        try:
            connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
            connection.execute("SELECT 1 FROM sqlite_master")
        except sqlite3.DatabaseError as exc:
            raise SourceError(f"{path} is not an SQLite database: {exc}") from None
        return connection, "?"
    if scheme in ("postgresql", "postgres"):
        try:
            connection = psycopg2.connect(
                host=parts.hostname,
                port=parts.port or 5432,
                user=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                dbname=unquote(parts.path.lstrip("/")),
                **dict(parse_qsl(parts.query)),
            )
        except (psycopg2.Error, ValueError) as exc:
            # The URL is not echoed: it may hold a password.
            raise SourceError(f"cannot connect to the source database: {str(exc).strip()}") from None
        connection.set_session(readonly=True)
        return connection, "%s"
    raise SourceError(
        f"the source must be a sqlite:// or postgresql:// URL, not {parts.scheme or 'no'} scheme"
    )


def _datetime(value: object) -> datetime | None:
    """SQLite keeps datetimes as text; both sources hold naive UTC."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class Source:
    """A vantage6 4.x database, opened read-only; the schema is checked on opening."""

    def __init__(self, url: str) -> None:
        self._connection: Any
        self._connection, self._param = _connect(url)
        self._postgres = self._param == "%s"
        self.columns = self._schema()

    def close(self) -> None:
        self._connection.close()

    def _tables(self) -> dict[str, set[str]]:
        cursor = self._connection.cursor()
        if self._postgres:
            cursor.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            )
            tables: dict[str, set[str]] = {}
            for table, column in cursor.fetchall():
                tables.setdefault(table, set()).add(column)
            return tables
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        names = [name for (name,) in cursor.fetchall()]
        quoted = {name: name.replace('"', '""') for name in names}
        return {
            name: {row[1] for row in cursor.execute(f'PRAGMA table_info("{quoted[name]}")')} for name in names
        }

    def _schema(self) -> dict[str, tuple[str, ...]]:
        """The known columns present per table; SourceError unless this is vantage6 4.x."""
        tables = self._tables()
        missing = [table for table in CORE_TABLES if table not in tables]
        if len(missing) == len(CORE_TABLES):
            raise SourceError("the source is not a vantage6 server database (none of its tables is there)")
        if missing:
            raise SourceError(
                f"the source is not a vantage6 4.x server database: no table {', '.join(missing)}"
            )
        unknown = sorted(set(tables) - set(SCHEMA))
        unknown += sorted(
            f"{table}.{column}"
            for table, columns in tables.items()
            if table in SCHEMA
            for column in columns - set(SCHEMA[table])
        )
        if unknown:
            raise SourceError(
                "the source has a schema newer than vantage6 4.15 (or is not a vantage6 4.x server "
                f"database): unknown {', '.join(unknown[:10])}"
            )
        return {
            table: tuple(c for c in columns if c in tables.get(table, ()))
            for table, columns in SCHEMA.items()
        }

    def count(self, table: str) -> int:
        if not self.columns[table]:
            return 0
        cursor = self._connection.cursor()
        cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
        return cursor.fetchone()[0]

    def rows(self, table: str) -> Iterator[dict]:
        """Every row of ``table`` as {column: value} with all columns of 4.15 (missing ones None),
        datetimes as naive UTC, blobs as bytes; by id where the table has one."""
        present = self.columns[table]
        if not present:
            return
        order = ' ORDER BY "id"' if "id" in present else ""
        cursor = self._connection.cursor()
        quoted = ", ".join(f'"{column}"' for column in present)
        cursor.execute(f'SELECT {quoted} FROM "{table}"{order}')
        while batch := cursor.fetchmany(1000):
            for values in batch:
                row = dict.fromkeys(SCHEMA[table])
                for column, value in zip(present, values, strict=True):
                    if column in DATETIME_COLUMNS:
                        try:
                            value = _datetime(value)
                        except ValueError:
                            raise SourceError(
                                f"{table} {values[0]}: {column} {value!r} is not a date and time"
                            ) from None
                    elif isinstance(value, memoryview):
                        value = bytes(value)
                    row[column] = value
                yield row
