"""The JSON body parser of the API: DRF's, with bounds on nesting and on the values of lists and objects,
reading the body at once, refusing text that is not Unicode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

from vantage6.nesting import (
    LONE_SURROGATE,
    TOO_DEEP,
    found_in_strings,
    too_deep,
    too_many_values,
    too_many_values_message,
)


class JSONParser(parsers.JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        # The body decoded in one call rather than through DRF's stream reader (a few µs of Python per
        # request); a body cut within a character is refused instead of parsed without that character.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]  # not in the stubs
        try:
            text = stream.read().decode(encoding)
            data = json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if too_deep(text, data):
            raise ParseError(TOO_DEEP)
        if too_many_values(text, data):
            raise ParseError(too_many_values_message())
        # A lone surrogate (a \ud800 escape, or a charset that decodes to one) is no Unicode text:
        # every field, every answer that repeats it, the database would fail on it. Plain ASCII text
        # without an escape has none: most bodies are not walked.
        plain = text.isascii() and "\\u" not in text
        if not plain and (found := found_in_strings(data, LONE_SURROGATE)) is not None:
            raise ParseError(f"JSON text with a lone surrogate, U+{ord(found):04X}, which is no Unicode text")
        return data
