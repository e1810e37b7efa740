"""The CORS policy of every answer of the server, REST or Socket.IO long-polling (standard library only).

An allowed origin may read the answers, never with credentials: the API and the sockets take a bearer
token, and no answer a page of another origin reads may be authenticated by the cookie its browser
sends on its own (the admin site's session).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

# The answer's header under '*', whether the request names an origin or not: one answer fits every origin,
# so a shared cache may give any answer to any page without a Vary.
_ANY_ORIGIN = (("Access-Control-Allow-Origin", "*"),)


def origin_allowed(origin: str, allowed: Collection[str]) -> bool:
    return "*" in allowed or origin in allowed


def allow_origin(origin: str | None, allowed: Collection[str]) -> Sequence[tuple[str, str]]:
    """The CORS headers of an answer to a request from ``origin``: what lets its page read the answer,
    nothing for an origin not allowed. Under ``*`` the same on every answer, one asked without Origin too;
    with a list of origins ``Vary: Origin`` on every answer, one that allows none (or was asked without
    Origin) too: either way a shared cache never gives a page an answer meant for another origin."""
    if "*" in allowed:
        return _ANY_ORIGIN
    vary = ("Vary", "Origin")
    return [("Access-Control-Allow-Origin", origin), vary] if origin and origin in allowed else [vary]
