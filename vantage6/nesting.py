"""Checks of JSON from clients, shared by the API's body parser and socket packets: a bound on its
nesting (deeper input would exhaust the recursion of the decoder or of the code that walks the data), a
bound on the values the lists and objects of a request body hold (``V6_MAX_JSON_VALUES``), and the search
of its strings for characters no stored text can hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection

from django.conf import settings

# Deeper than any body of the API or event of the socket protocol.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


class TooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH``."""

    def __init__(self) -> None:
        super().__init__(TOO_DEEP)


def too_deep(text: str, data: object) -> bool:
    """Whether ``data``, decoded from JSON ``text``, nests lists and objects beyond ``MAX_JSON_DEPTH``
    (walked level by level). It nests no deeper than its text opens lists and objects (a bracket in a
    string only adds to the count): most texts need no walk, which cost as much as their decoding."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
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


def too_many_values_message() -> str:
    return f"JSON with more than {settings.MAX_JSON_VALUES} values in its lists and objects"


def too_many_values(text: str, data: object) -> bool:
    """Whether the lists and objects of ``data``, decoded from the JSON body ``text``, hold more than
    ``V6_MAX_JSON_VALUES`` values in all (the items of a list, the members of an object). Each value of
    a list or object after its first follows a comma: most texts need no walk. The bound is on the work
    a small body costs: a list of ids is validated one by one, some 20 µs each, and a 16 MiB body holds
    millions (a minute of one process's interpreter, every other request of it waiting). Not for socket
    packets: those are bounded by their size (1 MB), and a node's columns of a wide data set are one list."""
    limit = settings.MAX_JSON_VALUES
    if text.count(",") + text.count("[") + text.count("{") <= limit:
        return False
    values, pending = 0, [data] if isinstance(data, (dict, list)) else []
    while pending:
        item = pending.pop()
        children: Collection[object] = item.values() if isinstance(item, dict) else item
        values += len(children)
        if values > limit:
            return True
        pending += [child for child in children if isinstance(child, (dict, list))]
    return False


def loads(text: str) -> object:
    """``json.loads`` for text from a client: TooDeep (a ValueError) when nested too deep."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise TooDeep from None
    if too_deep(text, data):
        raise TooDeep
    return data


# What a \u escape of JSON can put in a string but no UTF-8 text holds (nor a database column, a log).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def found_in_strings(data: object, pattern: re.Pattern[str]) -> str | None:
    """The first match of ``pattern`` in a string, or a key, of ``data`` (decoded JSON); None if none."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if found := pattern.search(item):
                return found.group()
        elif isinstance(item, dict):
            pending += item.keys()
            pending += item.values()
        elif isinstance(item, list):
            pending += item
    return None
