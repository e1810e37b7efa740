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
    """The headers that let a page of ``origin`` read the answer: none for an origin not allowed."""
    if not origin or not origin_allowed(origin, allowed):
        return []
    if "*" in allowed:
        return [("Access-Control-Allow-Origin", "*")]
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
