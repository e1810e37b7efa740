"""The permission matrix of the task endpoints (tasks, runs, results, kills, blobs); see tests/matrix.py."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from tasks.models import Run, Task
from tests.factories import make_run, make_task
from tests.matrix import (
    ANY_CLIENT,
    CONTAINER,
    OTHER,
    OWN,
    Case,
    Rules,
    deleted_unless_refused,
    list_case,
    matrix_tests,
    ok_if,
)
from tests.tasks.conftest import plain

pytestmark = pytest.mark.django_db

ALL = {"own", "collab", "other"}


def task_in_place(ctx) -> Task:
    """A task initiated by the place's organization in its collaboration, with an open run there."""
    task = make_task(ctx.collab, ctx.org)
    make_run(task, ctx.org)
    return task


def run_in_place(ctx) -> Run:
    return make_run(make_task(ctx.collab, ctx.org), ctx.org)


def node_in_place(ctx):
    node = {"own": ctx.world.node_a, "collab": ctx.world.node_b, "other": ctx.world.node_c}[ctx.place]
    Authenticatable.objects.filter(pk=node.pk).update(status="online")
    return node


def task_rows(r: Rules, _place) -> set[str]:
    if r.kind == CONTAINER:
        return set()  # of other jobs than the container's (README: deviations)
    scope = r.max_scope("task", "view")
    return {"glo": ALL, "col": {"own", "collab"}, "org": {"own"}}.get(scope, set())


def run_rows(r: Rules, _place) -> set[str]:
    if r.kind == CONTAINER:
        return set()  # of other jobs than the container's (README: deviations)
    scope = r.max_scope("run", "view")
    return {"glo": ALL, "col": {"own", "collab"}, "org": {"own"}}.get(scope, set())


def viewed(resource: str):
    """The status of viewing a ``resource`` row of the place: the matrix's tasks are of other jobs than
    the container's, which reads its own job only (README: deviations)."""
    return lambda r, p: ok_if(r.kind != CONTAINER and r.allow_org_in_col(resource, "view", p, p))


def create_status(r: Rules, place) -> int:
    # Root may create anywhere, but the caller's organization must be a member (permissions.md §5.3).
    return ok_if(r.can_col("task", "create", place) and place != OTHER, 201)


def killed_if_allowed(ctx, _response, expected: int) -> None:
    assert Run.objects.filter(task=ctx.target, status="killed by user").exists() == (expected == 200)


def fixed(path: str):
    return lambda _ctx: path


def always(status: int):
    return lambda _rules, _place: status


NODE_ONLY = ("node",)


def by_the_runs_node(status: int):
    """Only the node that executes the run: of the run's organization, in the run's collaboration."""
    return lambda _rules, place: ok_if(place == OWN, status)


CASES = [
    list_case("task", task_in_place, "/api/task?per_page=50", task_rows, clients=ANY_CLIENT),
    Case(
        "task detail", "get", "task/<pk>", target=task_in_place,
        path=lambda ctx: f"/api/task/{ctx.target.pk}",
        status=viewed("task"), rules=(("task", "view"),),
        clients=ANY_CLIENT,
    ),
    Case(
        "task status", "get", "task/<int:pk>/status", target=task_in_place,
        path=lambda ctx: f"/api/task/{ctx.target.pk}/status",
        status=viewed("task"),
        clients=("user", "container"),
    ),
    Case(
        "task create", "post", "task", path=fixed("/api/task"),
        body=lambda ctx: {"image": "x", "collaboration_id": ctx.collab.pk,
                          "organizations": [{"id": ctx.org.pk, "input": plain()}]},
        status=create_status, rules=(("task", "create"),),
        clients=("user", "container"),
    ),
    Case(
        "task delete", "delete", "task/<pk>", target=task_in_place,
        path=lambda ctx: f"/api/task/{ctx.target.pk}",
        status=lambda r, p: ok_if(r.allow_org_in_col("task", "delete", p, p)),
        check=deleted_unless_refused(Task),
        rules=(("task", "delete"),),
    ),
    list_case("run", run_in_place, "/api/run?per_page=50", run_rows, clients=ANY_CLIENT),
    Case(
        "run detail", "get", "run/<pk>", target=run_in_place, path=lambda ctx: f"/api/run/{ctx.target.pk}",
        status=viewed("run"),
        clients=ANY_CLIENT,
    ),
    Case(
        "run patch", "patch", "run/<pk>", target=run_in_place, path=lambda ctx: f"/api/run/{ctx.target.pk}",
        body=lambda _ctx: {"status": "active"}, status=by_the_runs_node(200), clients=NODE_ONLY,
    ),
    Case(
        "result list", "get", "result", target=run_in_place, path=fixed("/api/result?per_page=50"),
        status=lambda r, _: ok_if(r.max_scope("run", "view") is not None), rows=run_rows, per_place=False,
        clients=ANY_CLIENT,
    ),
    Case(
        "result detail", "get", "result/<pk>", target=run_in_place,
        path=lambda ctx: f"/api/result/{ctx.target.pk}",
        status=viewed("run"),
        clients=ANY_CLIENT,
    ),
    Case(
        "kill task", "post", "kill/task", target=task_in_place, path=fixed("/api/kill/task"),
        body=lambda ctx: {"id": ctx.target.pk}, status=lambda r, p: ok_if(r.can_col("event", "send", p)),
        check=killed_if_allowed, rules=(("event", "send"),),
    ),
    Case(
        "kill node tasks", "post", "kill/node/tasks", target=node_in_place,
        path=fixed("/api/kill/node/tasks"), body=lambda ctx: {"id": ctx.target.pk},
        status=lambda r, p: ok_if(r.allow_org_in_col("event", "send", p, p)),
    ),
    Case(
        "column", "post", "column", path=fixed("/api/column"),
        body=lambda ctx: {"db_label": "default", "collaboration_id": ctx.collab.pk,
                          "organizations": [{"id": ctx.org.pk, "input": plain()}]},
        status=create_status,
    ),
    Case(
        "blob status", "get", "blobstream/status", per_place=False,
        path=fixed("/api/blobstream/status"), status=always(200),
        clients=ANY_CLIENT,
    ),
    Case(
        "blob upload (no store)", "post", "blobstream", per_place=False, path=fixed("/api/blobstream"),
        # Users need to be able to create tasks; nodes and containers upload results.
        status=lambda r, _: 501 if r.kind != "user" or r.at_least("col", "task", "create") else 401,
        clients=ANY_CLIENT,
    ),
    Case(
        "blob download (no store)", "get", "blobstream/<str:uuid>", per_place=False,
        path=fixed("/api/blobstream/5d1f2b9e-7c1a-4a6e-9a43-0c1c2f1e4b11"), status=always(501),
        clients=ANY_CLIENT,
    ),
    Case(
        "port create", "post", "port", target=run_in_place, path=fixed("/api/port"),
        body=lambda ctx: {"port": 8080, "run_id": ctx.target.pk},
        status=by_the_runs_node(201), clients=NODE_ONLY,
    ),
    Case(
        "port delete", "delete", "port", target=run_in_place,
        path=lambda ctx: f"/api/port?run_id={ctx.target.pk}", status=by_the_runs_node(200), clients=NODE_ONLY,
    ),
    Case(
        "container token", "post", "token/container", target=task_in_place,
        path=fixed("/api/token/container"), clients=NODE_ONLY,
        body=lambda ctx: {"task_id": ctx.target.pk, "image": ctx.target.image},
        status=lambda _r, p: ok_if(p == OWN),  # tasks with a run of the node's organization
    ),
    # Without a VPN server configured.
    Case("vpn", "get", "vpn", per_place=False, path=fixed("/api/vpn"), status=always(501), clients=NODE_ONLY),
    Case("vpn update", "post", "vpn/update", per_place=False, path=fixed("/api/vpn/update"),
         status=always(501), clients=NODE_ONLY),
    Case("vpn addresses", "get", "vpn/algorithm/addresses", per_place=False,
         path=fixed("/api/vpn/algorithm/addresses"), status=always(200), clients=("container",)),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_large_result_store(settings):
    settings.LARGE_RESULT_STORE = ""


test_matrix, test_every_endpoint_has_a_case, test_every_task_and_run_rule_is_exercised = matrix_tests(
    CASES, "tasks.urls", ["task", "run"]
)
