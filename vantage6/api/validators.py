"""Validators of request fields whose rule the API document states: each carries the JSON-schema keywords
of its rule (``schema``), which the schema generation adds to its field (``vantage6.api.schema``). The rule
is written once, here or where it is declared, and the document says what the validator checks."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from rest_framework import serializers


class StatedRule(ABC):
    """A validator the document states; ``schema`` holds its JSON-schema keywords."""

    schema: dict[str, Any]

    @abstractmethod
    def __call__(self, value: Any) -> Any:
        """Raise a ``ValidationError`` for a value the rule refuses."""


class TextPattern(StatedRule):
    """Text that must match ``pattern`` (``pattern`` in the document), or with ``refuses_match`` must not
    (``not: {pattern}``), found anywhere in it as a JSON-schema pattern is. Written so that Python and
    ECMA-262 read it alike: ASCII classes spelled out, and ``$`` only as the end of the text (which
    Python writes ``\\Z``: its ``$`` also matches before a final newline)."""

    def __init__(self, pattern: str, message: str, *, refuses_match: bool = False) -> None:
        self.regex = re.compile(pattern.replace("$", r"\Z"))
        self.message = message
        self.refuses_match = refuses_match
        self.schema = (
            {"not": {"type": "string", "pattern": pattern}} if refuses_match else {"pattern": pattern}
        )

    def __call__(self, value: Any) -> None:
        if isinstance(value, str) and bool(self.regex.search(value)) is self.refuses_match:
            raise serializers.ValidationError(self.message)


class Excluded(StatedRule):
    """A value that must not be one of ``values`` (``not: {enum}``), e.g. a reserved name."""

    def __init__(self, values: Iterable[str], message: str) -> None:
        self.values = sorted(values)
        self.message = message
        self.schema = {"not": {"enum": self.values}}

    def __call__(self, value: Any) -> None:
        if value in self.values:
            raise serializers.ValidationError(self.message.format(value=value))


class UniqueItems(StatedRule):
    """A list whose items are all different (``uniqueItems``); with ``key``, a list of objects no two of
    which have the same ``key`` (of which ``uniqueItems`` states the part JSON schema can: two equal
    objects are refused; so are two that differ elsewhere but have the same ``key``)."""

    schema: dict[str, Any] = {"uniqueItems": True}

    def __init__(self, message: str = "The ids must be unique.", *, key: str | None = None) -> None:
        self.message = message
        self.key = key

    def __call__(self, value: Any) -> None:
        if not isinstance(value, list):
            return
        items = value if self.key is None else [item[self.key] for item in value]
        if len(set(items)) != len(items):
            raise serializers.ValidationError(self.message)


class AnyKeyRequired(StatedRule):
    """A body with a value (not null) for at least one of ``keys``, as a serializer's rule: not one where
    each is absent or null (``not``, which generated clients read past where an ``anyOf`` would make
    the body a union of its own)."""

    def __init__(self, keys: Iterable[str], message: str) -> None:
        self.keys = tuple(keys)
        self.message = message
        self.schema = {"not": {"properties": {key: {"enum": [None]} for key in self.keys}}}

    def __call__(self, attrs: Any) -> None:
        if all(attrs.get(key) is None for key in self.keys):
            raise serializers.ValidationError({self.keys[0]: [self.message]})


# An http(s) URL with a host (``http://server:5000`` too); or nothing. No blank or control character
# anywhere: the URL goes to algorithm stores in a request header (``server_url``).
HTTP_URL = r"^$|^[hH][tT][tT][pP][sS]?://[^/?#\x00-\x20\x7f][^\x00-\x20\x7f]*$"

# A UUID in the spellings ``uuid.UUID`` reads: either case, hyphens or none, in braces or a URN (braces
# as alternatives: a schema fuzzer rewrites a brace's ``?`` into a quantifier it cannot read).
UUID = (
    r"^(urn:uuid:)?([{]|)[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    r"[0-9a-fA-F]{12}([}]|)$"
)

# The characters ``str.strip()`` (DRF's trimming) and Python's ``\s`` take as blanks, spelled out for a
# pattern of the document: ECMA-262's ``\s`` differs (U+001C-U+001F and U+0085 are none, U+FEFF is one).
BLANKS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# A number as a name is written: a sign, digits and a decimal point, blanks around it (a name is refused
# when it is one, as vantage6 refuses numeric names).
NUMBER = rf"^[{BLANKS}]*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[{BLANKS}]*$"


def not_a_number(message: str) -> TextPattern:
    """The rule of a name: not a number (``NUMBER``)."""
    return TextPattern(NUMBER, message, refuses_match=True)
