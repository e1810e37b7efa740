"""The JSON body parser of the API: DRF's, with a bound on nesting, reading the body at once."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

from vantage6.nesting import TOO_DEEP, too_deep


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        # The body decoded in one call rather than through DRF's stream reader (a few µs of Python per
        # request); a body cut within a character is refused instead of parsed without that character.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]  # not in the stubs
        try:
            data = json.loads(
                stream.read().decode(encoding), parse_constant=json.strict_constant if self.strict else None
            )
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if too_deep(data):
            raise ParseError(TOO_DEEP)
        return data
