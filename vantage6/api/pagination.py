"""The vantage6 list envelope: ``page``/``per_page``/``sort``, ``links``, ``total-count`` and ``Link``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from math import ceil
from urllib.parse import urlencode

from django.conf import settings
from django.db import models
from django.db.models import Expression, Max, Q, QuerySet
from django.db.models.lookups import GreaterThan
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from vantage6.api.errors import bad_request
from vantage6.api.params import parse_int
from vantage6.api.sql import page_keys

EXPOSED_HEADERS = "total-count, Link"
# Larger values overflow the databases' LIMIT/OFFSET integers.
MAX_PAGE_ARG = 2**31 - 1
# Rows of one page at most: a larger ``per_page`` is served in pages of this size (with links).
MAX_PER_PAGE = 1000
# Rows of a page when ``per_page`` is not given; a page of rows with large fields (runs' inputs, results
# and logs) holds as many at least: the vantage6 node and client read pages of this size by number.
DEFAULT_PER_PAGE = 10
# The rows of a list that may show more than a number of bytes (all that do, and perhaps others).
LargeRows = Callable[[int], Q]


def _bounded_by_bytes(
    queryset: QuerySet, per_page: int, row_bytes: Expression, large_rows: LargeRows | None = None
) -> int:
    """``per_page``, made smaller for a list whose largest row (``row_bytes``) would take a page past
    ``settings.MAX_PAGE_BYTES``, but not below ``DEFAULT_PER_PAGE``. It is one size for every page of
    the list, so that a page number names the same rows for every page size (the node counts pages).

    Only rows too large for ``per_page`` of them are read, so a list of small rows costs a look at an
    index on ``row_bytes`` (``tasks.models.Run``'s) that finds none, not a pass over the list. Where
    ``row_bytes`` sums rows of another table (a task's runs), no index holds it: ``large_rows`` then
    names, from such an index, the rows that may exceed a number of bytes, and only those are summed (a
    sum for every row of the list took seconds at 100,000 tasks, for every list of tasks with their
    results that the client asks for)."""
    threshold = settings.MAX_PAGE_BYTES // per_page
    too_large = queryset.order_by()
    if large_rows is not None:
        too_large = too_large.filter(large_rows(threshold))
    too_large = too_large.filter(GreaterThan(row_bytes, threshold))
    largest = too_large.aggregate(largest=Max(row_bytes))["largest"]
    if largest is None:
        return per_page
    return max(DEFAULT_PER_PAGE, settings.MAX_PAGE_BYTES // largest)


def _first(request: Request, name: str) -> str | None:
    """The first value of a repeated argument, as vantage6 reads it (Django's ``get`` gives the last)."""
    values = request.query_params.getlist(name)
    return values[0] if values else None


def _positive_int(request: Request, name: str, default: int) -> int:
    raw = _first(request, name)
    if raw is None:
        return default
    value = parse_int(name, raw)
    if value < 1:
        raise bad_request(f"{name} needs to be >= 1")
    if value > MAX_PAGE_ARG:
        raise bad_request(f"{name} needs to be <= {MAX_PAGE_ARG}")
    return value


@cache
def sortable_fields(output: type[serializers.Serializer]) -> dict[str, str]:
    """Sort keys (field name, or the column of a foreign key) -> column, for the model fields that
    ``output`` shows as they are. Hidden columns (password, API key hash, ...) are never sort keys:
    the order of the rows would reveal them. Nor are texts of any length (a run's input, result and log,
    megabytes each): the database compares them whole, and ordering a thousand runs of 1 MiB by one
    took it 2-24 s, for a request of anyone who may list runs."""
    model = output.Meta.model  # type: ignore[attr-defined]  # an OutputSerializer
    columns = {f.name: f.attname for f in model._meta.concrete_fields if not isinstance(f, models.TextField)}
    shown = [
        name
        for name, field in output().fields.items()
        if name in columns and not isinstance(field, serializers.SerializerMethodField)
    ]
    return {key: columns[name] for name in shown for key in (name, columns[name])}


def sort_order(
    request: Request, queryset: QuerySet, default: Iterable[str], output: type[serializers.Serializer]
) -> list[str]:
    """``sort=a,-b`` as an ``order_by`` list; fields ``output`` does not show are a 400. ``id`` always
    breaks ties. A column sorted on again orders nothing the first did not: only its first key is kept,
    so that a query of thousands of keys (a request head holds some 20,000) costs the database nothing
    (ordering by all of them took seconds)."""
    raw = _first(request, "sort")
    order: dict[str, str] = {}  # column -> its key
    if raw:
        fields = sortable_fields(output)
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            descending = item.startswith("-")
            name = item.lstrip("+-")
            if name not in fields:
                raise bad_request(
                    f"Cannot sort a '{queryset.model.__name__}' by '{name}' because it does not exist"
                )
            order.setdefault(fields[name], ("-" if descending else "") + fields[name])
    for key in default:
        order.setdefault(key.lstrip("-"), key)
    return list(order.values())


def page_links(path: str, params: list[tuple[str, str]]) -> Callable[[int], str]:
    """The link to a page: ``params`` with ``page`` set where it is, or last; the other arguments are
    encoded once for all the links."""
    at = next((i for i, (key, _) in enumerate(params) if key == "page"), len(params))
    head, tail = urlencode(params[:at]), urlencode(params[at + 1 :])
    head, tail = f"{path}?{head}&" if head else f"{path}?", f"&{tail}" if tail else ""
    return lambda page: f"{head}page={page}{tail}"


def _window(queryset: QuerySet, offset: int, limit: int) -> QuerySet | list:
    """The ``limit`` rows of ``queryset`` from ``offset``. Past the first page the keys of those rows are
    chosen first, by a query of the keys and sort columns alone, and only those rows are read whole:
    the rows the ``OFFSET`` skips are keys, not rows of every column with their related rows (a list
    compiled by ``vantage6.api.sql.CompiledList`` does the same in its own SQL). A DISTINCT list's keys
    come from a semi-join (``page_keys``)."""
    if offset and isinstance(queryset, QuerySet):
        return queryset.filter(pk__in=page_keys(queryset)[offset : offset + limit])
    return queryset[offset : offset + limit]


def _page(queryset: QuerySet, page: int, per_page: int) -> tuple[list, int]:
    """The rows of one page and the number of rows of all pages. The page is read with one row more:
    a page that is the last one tells the number itself, and then there is no count query."""
    offset = (page - 1) * per_page
    rows = list(_window(queryset, offset, per_page + 1))
    if len(rows) <= per_page and (rows or offset == 0):
        return rows, offset + len(rows)
    return rows[:per_page], queryset.count()


def paginate(
    request: Request,
    queryset: QuerySet,
    output: type[serializers.Serializer],
    *,
    context: dict | None = None,
    serialize: Callable[[list], list] | None = None,
    default_order: Iterable[str] = ("id",),
    paginated: bool = True,
    row_bytes: Expression | None = None,
    large_rows: LargeRows | None = None,
) -> Response:
    """One page of ``queryset`` in the vantage6 envelope, as ``output`` with ``context`` shows its
    rows (``serialize`` when a list needs more than that); the shown fields are the sort keys.
    ``row_bytes``: the bytes of a row's large fields, by which a page of more than ``DEFAULT_PER_PAGE``
    rows is bounded (``_bounded_by_bytes``, with ``large_rows``)."""
    if serialize is None:

        def serialize(rows: list) -> list:
            return list(output(rows, many=True, context=context or {}).data)

    page = _positive_int(request, "page", 1)
    per_page = min(_positive_int(request, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    if row_bytes is not None and per_page > DEFAULT_PER_PAGE and paginated:
        per_page = _bounded_by_bytes(queryset, per_page, row_bytes, large_rows)
    queryset = queryset.order_by(*sort_order(request, queryset, default_order, output))
    if paginated:
        rows, total = _page(queryset, page, per_page)
    else:
        rows = list(queryset)
        total = len(rows)
        page, per_page = 1, max(total, 1)
    last = ceil(total / per_page)

    # Only the first value of a repeated query argument survives in the links, as in vantage6.
    link = page_links(request.path, [(key, values[0]) for key, values in request.query_params.lists()])
    links = {"first": link(1)}
    if page > 1:
        links["previous"] = link(page - 1)
    links["self"] = link(page)
    if page < last:
        links["next"] = link(page + 1)
    if last:
        links["last"] = link(last)

    response = Response({"data": serialize(rows), "links": links})
    response["total-count"] = str(total)
    response["Link"] = ",".join(f"<{url}>; rel={rel}" for rel, url in links.items())
    response["access-control-expose-headers"] = EXPOSED_HEADERS
    return response
