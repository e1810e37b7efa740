"""Strict parsing of the ``V6_`` environment variables.

Every setting of the server comes from the environment through these helpers. A value that
cannot be parsed raises ``SettingError`` naming the variable; ``load_settings_or_exit`` turns it
into one line on stderr and a non-zero exit. Every name asked for is kept in ``KNOWN_VARIABLES``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import bcrypt
from django.core.exceptions import ImproperlyConfigured

PREFIX = "V6_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Every variable the settings read (filled as they are read), e.g. to check deployment files.
KNOWN_VARIABLES: set[str] = set()


class SettingError(ImproperlyConfigured):
    """A ``V6_`` variable with a value that cannot be used; the message names the variable."""


def _raw(name: str) -> str | None:
    KNOWN_VARIABLES.add(PREFIX + name)
    return os.environ.get(PREFIX + name)


def load_settings_or_exit() -> None:
    """Load the settings; an invalid variable ends the process with one line instead of a traceback."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - evaluating the settings is the point
    except SettingError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
    raise SettingError(f"{PREFIX}{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise SettingError(f"{PREFIX}{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise SettingError(f"{PREFIX}{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise SettingError(f"{PREFIX}{name} must be at most {maximum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# The port a browser leaves out of an Origin, by scheme.
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> str:
    """``value`` as a browser writes the origin in ``Origin``: scheme and host in lower case, no default port
    (the same origin however it is spelled). ValueError, saying what a browser sends, for a value that no
    browser sends and so never matches, and for ``null``, which any sandboxed page or local file sends."""
    if value.lower() == "null":
        raise ValueError("would let any sandboxed page or local file read the answers")
    if any(char.isspace() for char in value):
        raise ValueError("never matches: it holds whitespace; separate origins with commas")
    if "://" not in value:
        example = "https://" + value.split("/")[0].lower()
        raise ValueError(f"never matches: a browser sends the scheme too, e.g. {example!r}")
    if "*" in value:
        raise ValueError("never matches: an origin is matched whole, '*' in it is no wildcard")
    try:
        url = urlsplit(value)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address
        raise ValueError("never matches: it is no URL") from None
    if url.scheme not in _DEFAULT_PORTS:
        raise ValueError("never matches: it is not an http:// or https:// origin")
    try:
        port = url.port
    except ValueError:
        raise ValueError("never matches: it has an invalid port") from None
    host = url.hostname or ""
    if not host or not host.isascii():
        raise ValueError("never matches: it needs a host, in ASCII (xn--) as a browser sends it")
    host = f"[{host}]" if ":" in host else host
    origin = f"{url.scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[url.scheme]) else f":{port}")
    if url.username is not None or url.path or url.query or url.fragment or value.endswith(("?", "#")):
        raise ValueError(f"never matches: a browser sends {origin!r} (no path, not even '/')")
    return origin


def env_origins(name: str, default: list[str]) -> list[str]:
    """Web origins (``https://ui.example.org``) as browsers send them in ``Origin``, or ``*`` alone for
    every origin. A value no browser sends is refused, as is ``*`` with origins: which is meant is unclear."""
    items = env_list(name, default)
    if "*" in items:
        if len(items) > 1:
            raise SettingError(f"{PREFIX}{name} lists '*' with origins; give '*' alone, or the origins alone")
        return items
    origins = []
    for item in items:
        try:
            origins.append(_origin(item))
        except ValueError as exc:
            raise SettingError(f"{PREFIX}{name}: {item!r} {exc}") from None
    return origins


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A list of IP addresses and networks (``10.0.0.1``, ``10.0.0.0/8``, ``fd00::/8``)."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingError(f"{PREFIX}{name} must list IP addresses or networks, got {item!r}") from None
    return networks


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise SettingError(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_api_path(name: str, default: str) -> str:
    """A URL path prefix: starts with '/', no trailing slash (``/`` itself becomes ``""``)."""
    value = env_str(name, default).strip()
    if not value.startswith("/") or "//" in value or " " in value:
        raise SettingError(f"{PREFIX}{name} must be a path starting with '/', got {value!r}")
    return value.rstrip("/")


# A bcrypt hash as vantage6 writes it; costs above 16 would stall every start-up check and login.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|1[0-6])\$[./A-Za-z0-9]{53}")


def env_bcrypt_hash(name: str) -> str:
    """A bcrypt hash (``$2b$12$...``), or "" when unset; never the hash of an empty password."""
    value = (_raw(name) or "").strip()
    if not value:
        return ""
    # The value is not echoed: it may be a password given by mistake.
    if not _BCRYPT_HASH.fullmatch(value):
        raise SettingError(f"{PREFIX}{name} must be a bcrypt hash ($2b$ and cost 04-16), not a password")
    if bcrypt.checkpw(b"", value.encode()):
        raise SettingError(f"{PREFIX}{name} is the hash of an empty password")
    return value


def env_secret(name: str, data_dir: Path, *, length: int = 64) -> str:
    """A secret from the environment, else from ``<data_dir>/<name>``, else generated and kept there."""
    value = _raw(name)
    if value is not None:
        if len(value) < 32:
            raise SettingError(f"{PREFIX}{name} must be at least 32 characters long")
        return value
    path = data_dir / name.lower()
    if not path.exists():
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Written aside, then linked into place: processes starting together agree on one secret.
            draft = data_dir / f".{path.name}.{os.getpid()}"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(length))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        except OSError as exc:
            raise SettingError(
                f"{PREFIX}{name} is unset and {path} cannot be written: {exc.strerror}"
            ) from None
    return path.read_text().strip()


DATABASE_CONNECT_TIMEOUT_SECONDS = 5
# libpq options of every PostgreSQL connection unless the URL sets them. A connect to an unreachable server
# ends in time; a connection whose peer vanished without a reset (a network cut, a host gone) is found dead
# within about a minute instead of the kernel's retransmission timeout (~15 minutes), during which the
# requests and socket events waiting on it would hang.
DATABASE_OPTIONS = {
    "connect_timeout": str(DATABASE_CONNECT_TIMEOUT_SECONDS),
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",  # ms that sent data may stay unacknowledged
}


def env_database(name: str, default_sqlite: Path) -> dict:
    """Django's DATABASES['default'] from a URL: ``sqlite:///path`` or ``postgres://u:p@host:port/db``."""
    value = _raw(name)
    if value is None or not value.strip():
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite)}
    url = urlsplit(value.strip())
    if url.scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path
        if url.netloc or len(url.path) < 2:
            raise SettingError(
                f"{PREFIX}{name}: an SQLite URL looks like sqlite:///relative or sqlite:////abs"
            )
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.path[1:]}
    if url.scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        db_name = unquote(url.path.lstrip("/"))
        if not url.hostname or not db_name:
            raise SettingError(f"{PREFIX}{name}: a PostgreSQL URL needs a host and a database name")
        try:
            port = url.port
        except ValueError:
            raise SettingError(f"{PREFIX}{name}: invalid port") from None
        # Query arguments (e.g. ?sslmode=require) are libpq connection options, over the defaults.
        options = {**DATABASE_OPTIONS, **dict(parse_qsl(url.query))}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname,
            "PORT": str(port or 5432),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    # The URL is not echoed: it may hold a password.
    raise SettingError(
        f"{PREFIX}{name} must start with sqlite:// or postgres://, got {url.scheme or 'no'} scheme"
    )


def env_amqp(name: str) -> str | None:
    value = _raw(name)
    if value is None or not value.strip():
        return None
    url = urlsplit(value.strip())
    if url.scheme not in ("amqp", "amqps") or not url.hostname:
        raise SettingError(f"{PREFIX}{name} must be an amqp://user:password@host:port URL")
    # A trailing '/' means vhost "" to the AMQP client; the default vhost is what is meant.
    return value.strip().rstrip("/") if url.path == "/" else value.strip()
