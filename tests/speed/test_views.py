"""Every API endpoint is served by the shared base view, which makes DRF's policy objects once."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import bearer, make_collab, make_node, make_org
from vantage6.api.views import ApiView

# The API's documentation pages and metrics are pages of the site (and plain Django views).
NOT_API = {"schema", "docs", "redoc", "metrics"}


def _views(resolver: URLResolver, prefix: str = "") -> dict[str, type | None]:
    found: dict[str, type | None] = {}
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found |= _views(entry, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/"):
            found[route] = getattr(entry.callback, "cls", None)
    return found


def test_every_api_endpoint_is_an_api_view():
    views = {route: cls for route, cls in _views(get_resolver()).items() if route[4:] not in NOT_API}
    assert len(views) > 40
    outside = sorted(route for route, cls in views.items() if cls is None or not issubclass(cls, ApiView))
    assert outside == []


@pytest.mark.django_db
def test_the_policies_of_a_view_are_made_once(api):
    org = make_org("o")
    node, _ = make_node(org, make_collab(org))
    ApiView._made.clear()
    for _ in range(3):
        assert api.get("/api/node", **bearer(node)).status_code == 200
    made = {name: made for (cls, name), made in ApiView._made.items() if cls.__name__ == "NodeViewSet"}
    assert {"parsers", "authenticators", "permissions", "renderers", "negotiator"} <= set(made)
    assert len(ApiView._made) == len(made)  # nothing else was asked
