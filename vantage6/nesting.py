"""A bound on the nesting of JSON from clients, shared by the API's body parser and socket packets.

Deeper input would exhaust the recursion of the decoder or of the code that walks the data.
"""

from __future__ import annotations

import json

# Deeper than any body of the API or event of the socket protocol.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


class TooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH``."""

    def __init__(self) -> None:
        super().__init__(TOO_DEEP)


def too_deep(data: object) -> bool:
    """Whether ``data`` nests lists and objects beyond ``MAX_JSON_DEPTH`` (walked level by level)."""
    level, depth = [data], 0
    while level:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return False
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return True
        level = [
            child for item in containers for child in (item.values() if isinstance(item, dict) else item)
        ]
    return False


def loads(text: str) -> object:
    """``json.loads`` for text from a client: TooDeep (a ValueError) when nested too deep."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise TooDeep from None
    if too_deep(data):
        raise TooDeep
    return data
