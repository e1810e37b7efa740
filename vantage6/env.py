"""Strict parsing of the ``V6_`` environment variables.

Every setting of the server comes from the environment through these helpers. A value that
cannot be parsed stops start-up with one line naming the variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

PREFIX = "V6_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    return os.environ.get(PREFIX + name)


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{PREFIX}{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be an integer, got {value!r}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(f"{PREFIX}{name} must be between {minimum} and {maximum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_api_path(name: str, default: str) -> str:
    """A URL path prefix: starts with '/', no trailing slash (``/`` itself becomes ``""``)."""
    value = env_str(name, default).strip()
    if not value.startswith("/") or "//" in value or " " in value:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be a path starting with '/', got {value!r}")
    return value.rstrip("/")


def env_secret(name: str, data_dir: Path, *, length: int = 64) -> str:
    """A secret from the environment, else from ``<data_dir>/<name>``, else generated and kept there."""
    value = _raw(name)
    if value is not None:
        if len(value) < 32:
            raise ImproperlyConfigured(f"{PREFIX}{name} must be at least 32 characters long")
        return value
    path = data_dir / name.lower()
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = secrets.token_urlsafe(length)
    path.touch(mode=0o600)
    path.write_text(generated)
    return generated


def env_database(name: str, default_sqlite: Path) -> dict:
    """Django's DATABASES['default'] from a URL: ``sqlite:///path`` or ``postgres://u:p@host:port/db``."""
    value = _raw(name)
    if value is None or not value.strip():
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite)}
    url = urlsplit(value.strip())
    if url.scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path
        if url.netloc or len(url.path) < 2:
            raise ImproperlyConfigured(
                f"{PREFIX}{name}: an SQLite URL looks like sqlite:///relative or sqlite:////abs"
            )
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.path[1:]}
    if url.scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        db_name = unquote(url.path.lstrip("/"))
        if not url.hostname or not db_name:
            raise ImproperlyConfigured(f"{PREFIX}{name}: a PostgreSQL URL needs a host and a database name")
        try:
            port = url.port
        except ValueError:
            raise ImproperlyConfigured(f"{PREFIX}{name}: invalid port") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname,
            "PORT": str(port or 5432),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(f"{PREFIX}{name} must start with sqlite:// or postgres://, got {value!r}")


def env_amqp(name: str) -> str | None:
    value = _raw(name)
    if value is None or not value.strip():
        return None
    url = urlsplit(value.strip())
    if url.scheme not in ("amqp", "amqps") or not url.hostname:
        raise ImproperlyConfigured(f"{PREFIX}{name} must be an amqp:// URL, got {value!r}")
    # A trailing '/' means vhost "" to the AMQP client; the default vhost is what is meant.
    return value.strip().rstrip("/") if url.path == "/" else value.strip()
