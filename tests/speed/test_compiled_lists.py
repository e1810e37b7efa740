"""The list pages run SQL compiled once per shape of the caller's scope, ordering and DISTINCT
(``vantage6.api.sql.CompiledList``): the same answers as the ORM's queries, each caller's own rows, and
no query built once a shape is compiled."""

from __future__ import annotations

import pytest
from django.db.models.sql.compiler import SQLCompiler

from accounts.models import Role
from collaborations.models import AlgorithmStore
from tests.factories import bearer, make_collab, make_node, make_org, make_study, make_task, make_user
from vantage6.api.sql import CompiledList

pytestmark = pytest.mark.django_db

LISTS = ["/api/user", "/api/organization", "/api/collaboration", "/api/node", "/api/task", "/api/run"]
INCLUDES = ["/api/run?include=task", "/api/task?include=runs", "/api/collaboration?include=organizations"]
MORE = ["/api/role", "/api/rule", "/api/study", "/api/algorithmstore", "/api/result"]
# Pages of one row, sorted, past the end, a full page (then the count runs), everything in one page.
PAGES = ["", "?per_page=1", "?per_page=2&page=2&sort=-{text}", "?page=9", "?per_page=3", "?sort=-id"]
CALLERS = ["root", "organization admin", "researcher", "viewer", "collaboration admin", "node", "no rules"]
TEXT = {"/api/run": "status", "/api/result": "result"}  # a text column to sort by: ``name`` elsewhere


def _pages(path: str) -> list[str]:
    text = TEXT.get(path.partition("?")[0], "name")
    return [path + page.format(text=text).replace("?", "&" if "?" in path else "?") for page in PAGES]


@pytest.fixture
def callers(world) -> dict[str, dict[str, str]]:
    """Callers of every scope shape, in a network with rows they may and may not see."""
    org_d = make_org("D")
    make_collab(world.org_a, org_d, name="AD")
    make_node(org_d, world.collab_c, "node-d")
    for org in (world.org_a, world.org_b, world.org_c, org_d):
        researcher = make_user(org, "Researcher")
        for collab in org.collaborations.all():
            make_task(collab, org, *collab.organizations.all(), init_user=researcher)
            make_study(collab, org)
            AlgorithmStore.objects.create(
                name=f"store {collab.pk} {org.pk}", url="https://store", collaboration=collab
            )
    AlgorithmStore.objects.create(name="for all", url="https://all")
    Role.objects.create(name="own", organization=world.org_b)
    return {
        "root": bearer(make_user(world.org_a, "Root")),
        "organization admin": bearer(make_user(world.org_b, "Organization Admin")),
        "researcher": bearer(make_user(world.org_a, "Researcher")),
        "viewer": bearer(make_user(org_d, "Viewer")),
        "collaboration admin": bearer(make_user(world.org_c, "Collaboration Admin")),
        "node": bearer(world.node_a),
        "no rules": bearer(make_user(world.org_a)),
    }


def _answer(response) -> tuple:
    return response.status_code, response.content, response.get("total-count"), response.get("Link")


# Every caller of a path in one test: the network of ``callers`` is built once for them all. Each
# caller's compiled and ORM answers follow each other (a node's request changes what the node lists show).
@pytest.mark.parametrize("path", [*LISTS, *MORE, *INCLUDES])
def test_a_compiled_page_answers_as_the_orms_query(api, callers, path):
    def answers(headers: dict[str, str]) -> list[tuple]:
        return [_answer(api.get(page, **headers)) for page in _pages(path)]

    differ = []
    for caller in CALLERS:
        compiled = answers(callers[caller]) + answers(callers[caller])  # the second time: the plans at work
        with pytest.MonkeyPatch.context() as orm:
            orm.setattr(CompiledList, "plan", lambda *_: None)  # the ORM's way
            if compiled != answers(callers[caller]) * 2:
                differ.append(caller)
    assert differ == []


@pytest.mark.parametrize("path", LISTS)
def test_callers_of_one_shape_each_get_their_own_rows(api, world, path):
    """Organization admins of two organizations: the same shape of scope, other values."""
    admins = {org.name: make_user(org, "Organization Admin") for org in (world.org_a, world.org_c)}
    task_ab = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    task_c = make_task(world.collab_c, world.org_c, world.org_c)
    task_b = make_task(world.collab_ab, world.org_b, world.org_b)
    runs = {task: [run.pk for run in task.runs.order_by("id")] for task in (task_ab, task_b, task_c)}
    seen = {
        name: sorted(row["id"] for row in api.get(path, **bearer(admin)).json()["data"])
        for name, admin in admins.items()
    }
    expected = {
        "/api/user": {name: [admin.pk] for name, admin in admins.items()},
        "/api/organization": {"A": [world.org_a.pk, world.org_b.pk], "C": [world.org_c.pk]},
        "/api/collaboration": {"A": [world.collab_ab.pk], "C": [world.collab_c.pk]},
        "/api/node": {"A": [world.node_a.pk, world.node_b.pk], "C": [world.node_c.pk]},
        "/api/task": {"A": [task_ab.pk, task_b.pk], "C": [task_c.pk]},
        "/api/run": {"A": runs[task_ab] + runs[task_b], "C": runs[task_c]},
    }[path]
    assert seen == expected


# The rows of the benchmark (and a node's lists) and scopes other than global (the roles a user holds,
# part of the role list's scope, are read by a query of their own).
HOT = [(caller, path) for caller in ("root", "organization admin", "researcher") for path in LISTS + MORE]
HOT = [(caller, path) for caller, path in HOT if path != "/api/role" or caller == "root"]
HOT += [("node", path) for path in [*LISTS[1:], "/api/study", "/api/result"]]


@pytest.mark.parametrize("path", sorted({path for _, path in HOT}))
def test_a_list_page_builds_no_query_once_its_shape_is_compiled(api, callers, path):
    full = f"{path}?per_page=1"  # a page that more rows follow
    as_sql = SQLCompiler.as_sql
    built = {}
    for caller in (caller for caller, hot_path in HOT if hot_path == path):
        headers = callers[caller]
        # Warmed right before its counted request: a list drops all its plans once it holds MAX_PLANS,
        # which another caller's warm-up in between could make it do.
        assert api.get(full, **headers).status_code == 200, caller
        compiled: list[str] = []

        def counted(self, *args, compiled=compiled, **kwargs):
            sql, params = as_sql(self, *args, **kwargs)
            compiled.append(sql)
            return sql, params

        with pytest.MonkeyPatch.context() as counting:
            counting.setattr(SQLCompiler, "as_sql", counted)
            response = api.get(full, **headers)
        assert response.status_code == 200, (caller, response.content)
        assert len(response.json()["data"]) == 1, caller
        built[caller] = compiled

    assert built == {caller: [] for caller in built}
