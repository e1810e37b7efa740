"""Log formatting: JSON lines when ``V6_LOG_FORMAT=json``; text from clients made fit for a log line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from django.db import InterfaceError, OperationalError


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Characters of client text a log line keeps: enough to recognise it, too few to flood the log.
CLIENT_TEXT_LIMIT = 200
# Request paths in access lines: longer, as they are what a reader of the log looks for.
PATH_TEXT_LIMIT = 1000


def client_text(value: object, limit: int = CLIENT_TEXT_LIMIT) -> str:
    """``value`` from a client for a log line: at most ``limit`` characters, with control and other
    unprintable characters escaped (``\\n``, ``\\x1b``), so that it can neither start a forged line nor
    drive a terminal."""
    text = str(value)
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in cut)
    return cut if len(text) <= limit else f"{cut}... ({len(text)} characters)"


# SQLSTATE classes whose messages describe the server's state, never a row: connection exceptions,
# invalid transaction state (a read-only database), insufficient resources (a full disk), operator
# intervention (a shutdown), system errors.
SERVER_STATE_CLASSES = frozenset({"08", "25", "53", "57", "58"})


def database_error_text(exc: BaseException) -> str:
    """What a log line may say of a database error: its class, SQLSTATE and constraint. Not the
    database's message, which can carry the values of a row (``Key (email)=(...) already exists``);
    only a failed connection (no SQLSTATE) and the classes of errors about the server itself keep the
    first line of it (host and port, a full disk, a read-only database: what the operator must fix)."""
    cause = exc.__cause__
    parts = [type(exc).__name__]
    if code := getattr(cause, "pgcode", None):
        parts.append(f"SQLSTATE {code}")
    if (code[:2] in SERVER_STATE_CLASSES) if code else isinstance(exc, OperationalError | InterfaceError):
        parts.append(str(exc).strip().partition("\n")[0])
    if constraint := getattr(getattr(cause, "diag", None), "constraint_name", None):
        parts.append(f"constraint {constraint}")
    return ", ".join(parts)
