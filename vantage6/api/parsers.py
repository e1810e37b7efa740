"""The JSON body parser of the API: DRF's, with a bound on nesting."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# Deeper than any body of the API; deeper input would exhaust the recursion of the decoder or of the
# code that walks the data.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


def _too_deep(data: object) -> bool:
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


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> object:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        if _too_deep(data):
            raise ParseError(TOO_DEEP)
        return data
