"""Serializer fields shared by the apps: ids, references, link strings and vantage6 timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db.models import Model
from rest_framework import serializers

from vantage6.api.references import list_link, ref

# The largest id a table holds: every id column is an ``AutoField`` (settings.DEFAULT_AUTO_FIELD), a
# 32-bit integer on every database, so a larger id is refused as input rather than sent to the database.
MAX_ID = 2**31 - 1


class IdField(serializers.IntegerField):
    """A database id: a positive integer that fits the id columns (huge numbers are a 400, not a 500)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


def id_list(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(child=IdField(), **kwargs)


def format_datetime(value: datetime | None) -> str | None:
    """Naive ISO-8601 in UTC, microseconds dropped when zero (``datetime.isoformat``)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


class TextOrNumberField(serializers.CharField):
    """Text a client may also send as a number, read as text (a two-factor code: the official client
    sends the ``int | str`` it is given). Other text fields take text only (``serializers.validated``)."""

    takes_numbers = True

    @property
    def also_takes(self) -> serializers.IntegerField:
        """The numbers it takes (for the document): those whose text is not longer than its own."""
        if self.max_length is None:
            return serializers.IntegerField()
        return serializers.IntegerField(
            min_value=1 - 10 ** (self.max_length - 1), max_value=10**self.max_length - 1
        )


class TimestampField(serializers.DateTimeField):
    def to_representation(self, value: datetime | None) -> str | None:  # type: ignore[override]  # null stays null
        return format_datetime(value)


class RefField(serializers.Field):
    """A to-one reference built from the ``<fk>_id`` attribute, so it costs no query."""

    def __init__(self, resource: str, fk_attr: str | None = None, **kwargs) -> None:
        self.resource = resource
        self.fk_attr = fk_attr
        kwargs.setdefault("read_only", True)
        kwargs["source"] = "*"
        super().__init__(**kwargs)

    def to_representation(self, instance: object) -> dict | None:
        attr = self.fk_attr or f"{self.field_name}_id"
        return ref(self.resource, getattr(instance, attr))


class ListLinkField(serializers.Field):
    """A to-many reference: ``/api/<resource>?<filter>=<this object's id>``."""

    def __init__(self, resource: str, filter_name: str, **kwargs) -> None:
        self.resource = resource
        self.filter_name = filter_name
        kwargs.setdefault("read_only", True)
        kwargs["source"] = "*"
        super().__init__(**kwargs)

    def to_representation(self, instance: Model) -> str:
        return list_link(self.resource, **{self.filter_name: instance.pk})
