"""The ``list`` action every list endpoint shares: declared query filters, the selector, one page."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Expression, QuerySet
from rest_framework.request import Request
from rest_framework.response import Response

from vantage6.api.pagination import LargeRows, paginate
from vantage6.api.params import Filters, list_param


class ListAction:
    """The ``list`` of a viewset: the query filters it declares (``FILTERS``) are parsed strictly,
    ``rows`` (its selector, called with the caller) reads the rows they select, and one page of those
    comes back as ``output`` shows them. ``INCLUDES`` names the related objects ``include=`` may
    embed; the chosen ones reach ``rows`` and ``output`` (``output_context``). The API document
    takes the query parameters from the same declarations (``vantage6.api.schema``)."""

    FILTERS: ClassVar[Filters] = Filters()
    INCLUDES: ClassVar[tuple[str, ...]] = ()
    default_order: ClassVar[tuple[str, ...]] = ("id",)
    serializer_class: Any  # DRF's attribute: the output serializer of a row

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        raise NotImplementedError

    def output(self, rows: list, include: set[str]) -> list:
        """The rows of one page as the answer shows them."""
        return self.serializer_class.represent(rows, self.output_context(include))

    def output_context(self, include: set[str]) -> dict:
        return {}

    def paginated(self, filters: dict) -> bool:
        return True

    def row_bytes(self, include: set[str]) -> Expression | None:
        """The bytes of a row's large fields as the list shows them (``pagination.bytes_of``), which
        bound a page; None: it shows none."""
        return None

    def large_rows(self, include: set[str]) -> LargeRows | None:
        """The rows that may show more than a number of bytes, found without summing ``row_bytes``
        for every row (``pagination._bounded_by_bytes``); None: ``row_bytes`` itself is indexed."""
        return None

    def includes(self, request: Request) -> set[str]:
        """The ``INCLUDES`` that ``include=`` names, repeated and/or comma-separated: for a list and
        for one row alike."""
        return set(list_param(request, "include")) & set(self.INCLUDES)

    def list(self, request: Request) -> Response:
        filters = self.FILTERS.parse(request)
        include = self.includes(request)
        return paginate(
            request,
            self.rows(filters, include),
            self.serializer_class,
            serialize=lambda rows: self.output(rows, include),
            default_order=self.default_order,
            paginated=self.paginated(filters),
            row_bytes=self.row_bytes(include),
            large_rows=self.large_rows(include),
        )
