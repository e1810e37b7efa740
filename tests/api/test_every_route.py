"""Every method on every API route answers a defined status: never a server error, whoever asks."""

from __future__ import annotations

import re
import uuid

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Role, Rule
from collaborations.models import AlgorithmStore
from tasks.models import Task
from tests.factories import bearer, make_run, make_study, make_task, make_user
from tests.tasks.conftest import container_identity

METHODS = ("get", "post", "patch", "put", "options", "head", "delete")  # delete last: it removes the row
API_PREFIX = settings.API_PATH.lstrip("/") + "/"
# 501 is the documented answer of a feature this server is not configured for (blob store, VPN).
NOT_CONFIGURED = 501
# Ids of no row: within the database's integers, and beyond them.
MISSING = (999999, 2**63, int("9" * 40))
PARAMETER = re.compile(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>")


def _routes(patterns=None, prefix: str = "") -> list[str]:
    routes = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern).strip("^$")
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith(API_PREFIX):
            routes.append(route)
    return routes


ROUTES = _routes()


def _path(route: str, ids: dict[str, int | str]) -> str:
    """The route with its parameters filled: ``pk`` by the row of the route's resource."""
    resource = route.removeprefix(API_PREFIX).split("/")[0]

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return str(ids.get(resource if name == "pk" else name, ids["missing"]))

    return "/" + PARAMETER.sub(value, route)


@pytest.fixture
def ids(world) -> dict[str, int | str]:
    task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    run = task.runs.first()
    make_run(make_task(world.collab_ab, world.org_b), world.org_b)
    store = AlgorithmStore.objects.create(name="store", url="https://store.example", collaboration=None)
    return {
        "user": make_user(world.org_a, "Researcher").pk,
        "role": Role.objects.get(name="Researcher").pk,
        "rule": Rule.objects.order_by("pk").first().pk,
        "rule_id": Rule.objects.order_by("pk").last().pk,
        "organization": world.org_a.pk,
        "collaboration": world.collab_ab.pk,
        "study": make_study(world.collab_ab, world.org_a).pk,
        "algorithmstore": store.pk,
        "node": world.node_a.pk,
        "task": task.pk,
        "run": run.pk,
        "result": run.pk,
        "uuid": str(uuid.uuid4()),
        "missing": 999999,
    }


def _callers(world, task_id: int) -> dict[str, dict[str, str]]:
    return {
        "anonymous": {},
        "root": bearer(make_user(world.org_c, "Root")),
        "node": bearer(world.node_b),
        "container": bearer(container_identity(Task.objects.get(pk=task_id), world.node_a)),
    }


@pytest.mark.parametrize("route", ROUTES)
def test_no_method_on_a_route_is_a_server_error(api, world, ids, route):
    api.raise_request_exception = False  # a server error is a status to report, not a crash of the test
    failures = []
    for caller, headers in _callers(world, ids["task"]).items():
        for method in METHODS:
            for path in (_path(route, ids), *(_path(route, {"missing": m}) for m in MISSING)):
                body = {} if method in ("post", "patch", "put") else None
                response = getattr(api, method)(path, body, format="json", **headers)
                if response.status_code >= 500 and response.status_code != NOT_CONFIGURED:
                    failures.append(f"{caller} {method.upper()} {path}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_every_route_is_listed():
    assert len(ROUTES) > 40
    assert f"{API_PREFIX}blobstream" in ROUTES
