"""Checks of ``manage.py bootstrap``, which runs before every start: owner-only files, risky settings."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.conf import settings

# The files the server keeps next to an SQLite database while it is open.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _sqlite_path() -> Path | None:
    database = settings.DATABASES["default"]
    name = str(database["NAME"])
    if not database["ENGINE"].endswith("sqlite3") or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def secure_data_files() -> list[str]:
    """Make the data folder owner-only (0700) and the database and secrets owner-only (0600).

    An SQLite database that does not exist yet is created empty and owner-only here, before the
    first connection: SQLite gives its journal files the mode of the database. Returns a warning
    for each path whose mode cannot be changed.
    """
    folders = [settings.DATA_DIR]
    files = [settings.DATA_DIR / "secret_key", settings.DATA_DIR / "jwt_secret_key"]
    database = _sqlite_path()
    if database is not None:
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not database.exists():
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        files += [database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)]
    warnings = []
    for path, mode in [(folder, 0o700) for folder in folders] + [(file, 0o600) for file in files]:
        try:
            if path.exists() and path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
        except OSError as exc:
            warnings.append(f"Could not make {path} readable by its owner only: {exc.strerror}")
    return warnings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def deployment_warnings() -> list[str]:
    """Warnings about serving beyond this machine without TLS, without knowing the proxy, or without
    a host name check."""
    if _is_loopback(settings.HOST):
        return []
    warnings = []
    if not settings.BEHIND_TLS:
        warnings.append(
            f"V6_HOST={settings.HOST} serves other machines over plain HTTP: passwords and tokens travel "
            "unencrypted. Put a TLS-terminating proxy in front and set V6_BEHIND_TLS=1."
        )
    elif not settings.TRUSTED_PROXIES:
        warnings.append(
            "V6_TRUSTED_PROXIES is empty: any client that reaches this server directly, not through the "
            "TLS proxy, can claim HTTPS (X-Forwarded-Proto). List the proxy's address in it."
        )
    if "*" in settings.ALLOWED_HOSTS:
        warnings.append("V6_ALLOWED_HOSTS is '*': set it to the host names clients use to reach this server.")
    return warnings
