"""Strict parsing of query parameters: a malformed value is a 400 with a message, never a 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime

from rest_framework.request import Request

from vantage6.api.errors import bad_request
from vantage6.api.sql import MAX_KEY
from vantage6.api.validators import TextPattern


def param_values(request: Request, name: str) -> list[str]:
    """Every value of a query parameter. One with a NUL character is malformed: no stored text has one,
    and PostgreSQL refuses a string with one outright."""
    found = request.query_params.getlist(name)
    if any("\x00" in value for value in found):
        raise bad_request(f"{name} must not contain a NUL character")
    return found


def first(request: Request, name: str) -> str | None:
    """The first value of a query parameter: vantage6 reads the first of repeated values."""
    found = param_values(request, name)
    return found[0] if found else None


def flag(request: Request, name: str) -> bool:
    """A flag is true when present with a non-empty value other than ``false`` or ``0`` (any case).
    vantage6 takes those as true as well, but the official clients send ``False`` for a flag left at its
    default: ``client.collaboration.delete(id)``, documented to be refused while the collaboration has
    tasks or nodes, deleted them along with it."""
    raw = first(request, name)
    return raw is not None and raw != "" and raw.lower() not in _FLAG_OFF


_FLAG_OFF = frozenset({"false", "0"})


def int_param(request: Request, name: str) -> int | None:
    raw = first(request, name)
    return None if raw is None else parse_int(name, raw)


# ASCII digits only: Python's ``int`` also reads `` 1 ``, ``1_000`` and other scripts' digits.
_INTEGER = re.compile(r"-?[0-9]+")


def parse_int(name: str, raw: str) -> int:
    """The integer ``raw`` writes in decimal digits (no value is none: a 400)."""
    if not _INTEGER.fullmatch(raw):
        raise bad_request(f"{name} must be an integer, got {raw[:40]!r}")
    return _in_range(name, raw)


def int_list_param(request: Request, name: str) -> list[int]:
    """Repeated and/or comma-separated integers: ``ids=1&ids=2`` or ``ids=1,2``."""
    numbers: list[int] = []
    for raw in param_values(request, name):
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            if not _INTEGER.fullmatch(item):
                raise bad_request(f"{name} must be a list of integers, got {raw[:40]!r}")
            numbers.append(_in_range(name, item))
    return numbers


def _in_range(name: str, digits: str) -> int:
    """The integer ``digits`` writes, if the database's integers hold it: beyond them SQLite raises
    instead of matching no row, so such a filter is refused as malformed. Digits past any database
    integer's are not converted (``int`` refuses 4,300 and more with an error of its own)."""
    value = int(digits) if len(digits) <= _KEY_DIGITS else None
    if value is None or not -MAX_KEY - 1 <= value <= MAX_KEY:
        bounds = f"between {-MAX_KEY - 1} and {MAX_KEY}"
        raise bad_request(f"{name} must be an integer {bounds}, got {digits[:40]}")
    return value


_KEY_DIGITS = len(str(-MAX_KEY - 1))


def list_param(request: Request, name: str) -> list[str]:
    """Repeated and/or comma-separated strings (``include=runs,results&include=task``)."""
    return [item.strip() for raw in param_values(request, name) for item in raw.split(",") if item.strip()]


def date_param(request: Request, name: str) -> date | None:
    raw = first(request, name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} must be a date as YYYY-MM-DD, got {raw!r}") from None


def datetime_param(request: Request, name: str) -> datetime | None:
    raw = first(request, name)
    if raw is None:
        return None
    try:
        return parse_datetime(raw)
    except ValueError:
        raise bad_request(f"{name} must be an ISO-8601 date or datetime, got {raw!r}") from None


def parse_datetime(raw: str) -> datetime:
    """Any ISO-8601 date or datetime, as naive UTC (raises ValueError)."""

    # RFC 3339 also writes UTC as a lower-case ``z`` (the API document's ``date-time``).
    value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # year 1 or 9999 whose offset takes it out of the range of a datetime
            raise ValueError(f"{raw!r} in UTC is out of range") from None
    return value


def like_param(request: Request, name: str) -> str | None:
    """A ``LIKE`` pattern parameter (its first value)."""
    value = first(request, name)
    return None if value is None else _pattern(name, value)


def likes_param(request: Request, name: str) -> list[str]:
    """Every non-empty value of a repeated pattern parameter (a row matches any of them)."""
    return [_pattern(name, value) for value in param_values(request, name) if value]


# A ``LIKE`` pattern's backslash escapes the character after it (PostgreSQL's ``LIKE``, vantage6's): one
# ending in a backslash that escapes nothing is malformed (PostgreSQL refuses it).
LIKE_PATTERN = TextPattern(
    r"(^|[^\\])(\\\\)*\\$",
    "must not end with a lone backslash, which escapes the character after it",
    refuses_match=True,
)


def _pattern(name: str, value: str) -> str:
    """A ``LIKE`` pattern as given (``LIKE_PATTERN``)."""
    if LIKE_PATTERN.regex.search(value):
        raise bad_request(f"{name} {LIKE_PATTERN.message}")
    return value


def bool_param(request: Request, name: str) -> bool | None:
    """``1``, ``true``, ``0`` or ``false`` (any case); anything else (also no value) is a 400."""
    raw = first(request, name)
    if raw is None:
        return None
    if raw.lower() not in _BOOLEANS:
        raise bad_request(f"{name} must be one of 1, 0, true or false, got {raw!r}")
    return _BOOLEANS[raw.lower()]


_BOOLEANS = {"1": True, "true": True, "0": False, "false": False}

_PARSERS: dict[str, Callable[[Request, str], object]] = {
    "id": int_param,
    "int": int_param,
    "ids": int_list_param,
    "text": first,
    "like": like_param,
    "likes": likes_param,
    "date": date_param,
    "time": datetime_param,
    "flag": lambda request, name: flag(request, name) or None,
    "bool": bool_param,
    "list": list_param,
}


class OneOf:
    """The kind of a text filter whose value is one of ``values`` (an ``enum`` in the document); another
    value (also an empty one) is a 400."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = tuple(values)

    def __call__(self, request: Request, name: str) -> str | None:
        raw = first(request, name)
        if raw is not None and raw not in self.values:
            raise bad_request(f"Unknown {name} {raw!r}; the values are: {', '.join(self.values)}")
        return raw


class Filters:
    """The query filters of one endpoint, declared once by name and kind (``vantage6.api.schema``'s
    ``FILTER_KINDS``): ``parse`` reads them strictly for the selector (a malformed value is a 400
    before anything is read), ``parameters`` describes them in the API document."""

    def __init__(self, **kinds: str | OneOf) -> None:
        unknown = {kind for kind in kinds.values() if not isinstance(kind, OneOf)} - set(_PARSERS)
        assert not unknown, f"unknown filter kinds: {unknown}"
        self.kinds = kinds

    def parse(self, request: Request) -> dict[str, object]:
        """The filters the request sets, parsed; absent and empty ones (and unset flags) are left out."""
        parsed = {}
        for name, kind in self.kinds.items():
            value = kind(request, name) if isinstance(kind, OneOf) else _PARSERS[kind](request, name)
            if value is not None and value != "" and value != []:
                parsed[name] = value
        return parsed

    @property
    def parameters(self) -> list:
        from vantage6.api.schema import filters

        return filters(**self.kinds)
