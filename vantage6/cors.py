"""The CORS policy of every answer of the server, REST or Socket.IO long-polling (standard library only).

An allowed origin may read the answers, never with credentials: the API and the sockets take a bearer
token, and no answer a page of another origin reads may be authenticated by the cookie its browser
sends on its own (the admin site's session).
"""

from __future__ import annotations

from collections.abc import Collection


def origin_allowed(origin: str, allowed: Collection[str]) -> bool:
    return "*" in allowed or origin in allowed


def allow_origin(origin: str | None, allowed: Collection[str]) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a request from ``origin``: what lets its page read the answer,
    nothing for an origin not allowed; and with a list of origins ``Vary: Origin`` on every answer, one
    that allows none (or was asked without Origin) too, so a shared cache never gives it to another."""
    if "*" in allowed:
        return [("Access-Control-Allow-Origin", "*")] if origin else []
    vary = ("Vary", "Origin")
    return [("Access-Control-Allow-Origin", origin), vary] if origin and origin in allowed else [vary]
