"""Routes indexed by the start of their paths resolve every path as Django's resolver does."""

from __future__ import annotations

import pytest
from django.urls import Resolver404, get_resolver
from django.urls.resolvers import URLResolver

from vantage6.api.routes import RouteIndex


def _paths(resolver: URLResolver) -> set[str]:
    """A path of every named route (each parameter given the value 7), the admin's included."""
    paths = set()
    for possibilities, *_ in (v for values in resolver.reverse_dict.lists() for v in values[1]):
        for template, params in possibilities:
            paths.add("/" + template % dict.fromkeys(params, "7"))
    for prefix, namespaced in resolver.namespace_dict.values():
        paths |= {"/" + prefix + path.lstrip("/") for path in _paths(namespaced)}
    return paths


STRAY = [
    "/", "/api", "/api/", "/api/run/abc", "/api/runx", "/api/run/5/", "/API/run/5", "/api//run",
    "/api/run/5/extra", "/api/task/5/status/", "/api/kill", "/api/kill/", "/api/kill/task/x",
    "/admin", "/admin/", "/admin/nowhere/", "/robots.txt", "/robots.txtx", "/api/blobstream/a/b",
    "/api/token", "/api/token/", "/api/user/0", "/api/user/-1", "/static/x.css", "run/5",
]  # fmt: skip


def _answer(resolver, path: str) -> tuple | None:
    try:
        match = resolver.resolve(path)
    except Resolver404:
        return None
    return (
        match.func, match.args, match.kwargs, match.url_name, match.route, match.app_names,
        match.namespaces, match.captured_kwargs, match.extra_kwargs,
    )  # fmt: skip


def test_every_route_and_stray_path_resolves_as_django_resolves_it():
    root = get_resolver()
    index = RouteIndex(root)
    paths = _paths(root)
    assert "/api/run/7" in paths and "/api/kill/task" in paths and "/admin/" in paths
    for path in sorted(paths | set(STRAY)):
        assert _answer(index, path) == _answer(root, path), path
    assert _answer(index, "/api/run/7") is not None


def test_a_path_is_tried_against_its_own_routes_only():
    index = RouteIndex(get_resolver())
    routes = index.groups["api/run/"]
    leaves = [p for entry in routes.url_patterns for p in entry.url_patterns]  # the "api/" include(s)
    # Of some fifty routes, those whose paths start as "api/run/" does (or are a start of it).
    assert [str(p.pattern) for p in leaves] == ["^run$", "^run/(?P<pk>[0-9]+)$"]


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/run/x", "/nowhere"])
def test_no_match_is_djangos_404(path):
    with pytest.raises(Resolver404) as indexed:
        RouteIndex(get_resolver()).resolve(path)
    with pytest.raises(Resolver404) as django:
        get_resolver().resolve(path)
    assert indexed.value.args == django.value.args


@pytest.mark.django_db
def test_the_asgi_handler_resolves_through_the_index(monkeypatch):
    from tests.speed.test_handler import call
    from vantage6.handler import PooledASGIHandler

    resolved = []
    resolve = RouteIndex.resolve
    monkeypatch.setattr(
        RouteIndex, "resolve", lambda index, path: resolved.append(path) or resolve(index, path)
    )
    status, _, body, _ = call(PooledASGIHandler(), "/api/version")
    assert status == 200 and b"version" in body
    assert resolved == ["/api/version"]
