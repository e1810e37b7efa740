"""The reads of the benchmark cost a fixed number of SQL statements, whatever the number of rows and of
organizations in the collaboration (``bench/api.py``'s read rows, as root, a researcher and a node)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role, Rule
from collaborations.models import AlgorithmStore, Study
from nodes.models import NodeConfig
from tasks.models import AlgorithmPort, Task, TaskDatabase
from tests.factories import bearer, full_page, make_node, make_org, make_study, make_task, make_user
from vantage6.api.pagination import DEFAULT_PER_PAGE

pytestmark = pytest.mark.django_db

# Statements of one request: the caller (with its rules and collaborations) first; a list then its
# page, each row with the number of all rows (no count query); tasks their databases, runs their ports
# and nodes (and the embedded tasks' databases): one statement each per page.
ROWS = [
    ("root", "/api/user", 2),
    ("root", "/api/user/{user}", 2),
    ("root", "/api/organization", 2),
    ("root", "/api/organization/{organization}", 2),
    ("root", "/api/collaboration", 2),
    ("root", "/api/collaboration/{collaboration}", 2),
    ("root", "/api/node", 2),
    ("root", "/api/node/{node}", 2),
    ("root", "/api/task", 3),
    ("root", "/api/task/{task}", 3),
    ("root", "/api/run", 4),
    ("root", "/api/run?include=task", 5),
    ("root", "/api/run/{run}", 4),
    ("researcher", "/api/task", 3),
    ("researcher", "/api/run", 4),
    ("node", "/api/node", 2),
    # Beyond the benchmark's rows; with a relation to prefetch (include=), the count is a query apart.
    ("root", "/api/task?include=runs", 7),
    ("root", "/api/collaboration?include=organizations", 4),
    ("root", "/api/result", 2),
    ("root", "/api/result/{run}", 2),
    ("root", "/api/role", 2),
    ("root", "/api/role/{role}", 2),
    ("root", "/api/rule", 2),
    ("root", "/api/rule/{rule}", 2),
    ("root", "/api/study", 2),
    ("root", "/api/study/{study}", 2),
    ("root", "/api/algorithmstore", 2),
    ("researcher", "/api/organization", 2),
    ("researcher", "/api/user", 2),
    ("researcher", "/api/collaboration", 2),
    ("node", "/api/organization", 2),
    ("node", "/api/collaboration", 2),
    ("node", "/api/task", 3),
    ("node", "/api/run", 4),
]


def _grow(world, organizations: int) -> None:
    """More organizations in the collaboration, each with a node, users and tasks whose runs have
    ports, and tasks with databases."""
    for _ in range(organizations):
        org = make_org()
        world.collab_ab.organizations.add(org)
        node, _key = make_node(org, world.collab_ab)
        NodeConfig.objects.create(node=node, key="columns_default", value="age")
        make_user(org, "Researcher")
        make_study(world.collab_ab, world.org_a, org)
        AlgorithmStore.objects.create(
            name=f"store of {org.name}", url="https://store", collaboration=world.collab_ab
        )
        Role.objects.create(name=f"role of {org.name}", organization=org).rules.add(*Rule.objects.all()[:3])
        task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, org)
        TaskDatabase.objects.create(task=task, database="default", parameters="{}")
        for run in task.runs.all():
            AlgorithmPort.objects.create(run=run, port=8000 + run.pk, label="web")


def _with_bound(path: str, expected: int) -> int:
    """``expected``, and 1 more for a page of more than 10 rows with large fields (runs, results, tasks
    with them): the list's largest row, which bounds the page (``vantage6.api.pagination``)."""
    rows = int(parse_qs(urlsplit(path).query).get("per_page", ["10"])[0])
    large = path.startswith(("/api/run", "/api/result")) or "include=" in path
    return expected + (rows > DEFAULT_PER_PAGE and large)


def _statements(api, path: str, headers: dict) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(path, **headers)
    assert response.status_code == 200, response.content
    return len(captured)


@pytest.mark.parametrize(("caller", "path", "expected"), ROWS, ids=[f"{c} {p}" for c, p, _ in ROWS])
def test_a_read_costs_the_same_statements_for_any_number_of_rows(api, world, caller, path, expected):
    researcher = make_user(world.org_a, "Researcher")
    callers = {
        "root": bearer(make_user(world.org_a, "Root")),
        "researcher": bearer(researcher),
        "node": bearer(world.node_a),
    }
    _grow(world, 2)
    task = Task.objects.order_by("id").last()
    assert task is not None
    values = {
        "user": researcher.pk,
        "organization": world.org_b.pk,
        "collaboration": world.collab_ab.pk,
        "node": world.node_b.pk,
        "task": task.pk,
        "run": task.runs.order_by("id").first().pk,  # type: ignore[union-attr]
        "role": Role.objects.order_by("id").last().pk,  # type: ignore[union-attr]
        "rule": Rule.objects.order_by("id").last().pk,  # type: ignore[union-attr]
        "study": Study.objects.order_by("id").last().pk,  # type: ignore[union-attr]
    }
    path, headers = path.format(**values), callers[caller]
    api.get(path, **headers)  # the first request of a token also records when it was seen
    single = "?" not in path and path.rstrip("/").split("/")[-1].isdigit()
    # Lists: a page of one row, and one page of every row (the last), before and after growing.
    paths = [path] if single else [f"{path}{'&' if '?' in path else '?'}per_page=1"]
    counts, expected_counts = [_statements(api, p, headers) for p in paths], [expected] * len(paths)
    if not single:
        full = full_page(api, path, headers)
        counts.append(_statements(api, full, headers))
        expected_counts.append(_with_bound(full, expected))
    _grow(world, 6)
    counts += [_statements(api, p, headers) for p in paths]
    expected_counts += [expected] * len(paths)
    if not single:
        full = full_page(api, path, headers)
        counts.append(_statements(api, full, headers))
        expected_counts.append(_with_bound(full, expected))
    assert counts == expected_counts
