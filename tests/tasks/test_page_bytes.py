"""A page of runs, results or tasks with their runs is bounded by the bytes of its large fields
(``V6_MAX_PAGE_MB``): a ``per_page`` of 1000 would otherwise read a thousand inputs and results of up to
a request body each into one process. The page size is one for every page of a list, never below the
default 10, so that following ``links.next`` and counting pages (as the vantage6 node does) both give
every row once."""

from __future__ import annotations

import tracemalloc
from urllib.parse import urlsplit

import pytest

from tests.factories import bearer, make_run, make_task, make_user

pytestmark = pytest.mark.django_db

LIMIT = 64 * 1024


@pytest.fixture(autouse=True)
def page_limit(settings):
    settings.MAX_PAGE_BYTES = LIMIT


def every_page(api, who, path: str) -> list[list[dict]]:
    """The pages of a list, following ``links.next`` as a client does."""
    pages = []
    while path:
        response = api.get(path, **bearer(who))
        assert response.status_code == 200, response.json()
        pages.append(response.json()["data"])
        following = response.json()["links"].get("next")
        path = f"{urlsplit(following).path}?{urlsplit(following).query}" if following else ""
    return pages


def test_a_page_of_runs_ends_at_the_byte_bound_and_links_reach_every_run(api, world):
    task = make_task(world.collab_ab, world.org_a)
    runs = [
        make_run(task, world.org_a, input="i" * 2048, result="r" * 1024, log="l" * 1024) for _ in range(35)
    ]
    viewer = make_user(world.org_a, "Viewer")
    pages = every_page(api, viewer, "/api/run?per_page=1000")
    assert [len(page) for page in pages] == [16, 16, 3]  # 64 KiB / 4 KiB a run
    assert sorted(run["id"] for page in pages for run in page) == sorted(run.pk for run in runs)

    first = api.get("/api/run?per_page=1000", **bearer(viewer))
    assert first["total-count"] == "35"
    assert first.json()["links"]["last"].endswith("/api/run?per_page=1000&page=3")
    # Counting pages with the same arguments gives the same rows.
    by_number = [
        api.get(f"/api/run?per_page=1000&page={n}", **bearer(viewer)).json()["data"] for n in (1, 2, 3)
    ]
    assert by_number == pages

    results = every_page(api, viewer, "/api/result?per_page=1000")
    assert [len(page) for page in results] == [35]  # 1 KiB of result a row
    tasks = every_page(api, viewer, "/api/task?per_page=1000&include=runs")
    assert [len(page) for page in tasks] == [1]


def test_a_page_holds_the_default_ten_rows_whatever_their_size(api, world):
    task = make_task(world.collab_ab, world.org_a)
    for _ in range(12):
        make_run(task, world.org_a, input="i" * LIMIT)
    viewer = make_user(world.org_a, "Viewer")
    assert [len(page) for page in every_page(api, viewer, "/api/run?per_page=1000")] == [10, 2]
    # The node counts pages of the default size (``page`` + 1 while there is a next link).
    node_pages = [api.get(f"/api/run?page={n}", **bearer(world.node_a)).json()["data"] for n in (1, 2)]
    assert [len(page) for page in node_pages] == [10, 2]


def test_tasks_with_their_runs_are_bounded_by_their_runs_bytes(api, world):
    for _ in range(25):
        task = make_task(world.collab_ab, world.org_a)
        for org in (world.org_a, world.org_b):
            make_run(task, org, input="i" * 2048, result="r" * 2048)
    viewer = make_user(world.org_a, "Viewer")
    # 8 KiB of runs a task: 10 tasks a page at least (64 KiB / 8 KiB is 8); 4 KiB of results: 16.
    pages = every_page(api, viewer, "/api/task?per_page=1000&include=runs")
    assert [len(page) for page in pages] == [10, 10, 5]
    assert len({task["id"] for page in pages for task in page}) == 25
    assert [len(page) for page in every_page(api, viewer, "/api/task?per_page=1000&include=results")] == [
        16,
        9,
    ]
    assert [len(page) for page in every_page(api, viewer, "/api/task?per_page=1000")] == [25]


def test_the_memory_of_a_large_page_stays_near_the_bound(api, world, settings):
    settings.MAX_PAGE_BYTES = 4 * 2**20
    task = make_task(world.collab_ab, world.org_a)
    for _ in range(40):
        make_run(task, world.org_a, input="i" * 2**18)  # 256 KiB each, 10 MiB in all
    viewer = make_user(world.org_a, "Viewer")
    tracemalloc.start()
    try:
        response = api.get("/api/run?per_page=1000", **bearer(viewer))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 200 and len(response.json()["data"]) == 16
    assert len(response.content) < 4.2 * 2**20
    assert peak < 4 * 4 * 2**20, peak


@pytest.mark.parametrize(("size", "pages"), [(LIMIT // 20, [20, 5]), (LIMIT // 20 + 1, [19, 6])])
def test_a_page_is_smaller_only_from_a_row_too_large_for_it(api, world, size, pages):
    """Rows of exactly their share of the bound fill a page; a byte more and the page holds one fewer."""
    task = make_task(world.collab_ab, world.org_a)
    for _ in range(25):
        make_run(task, world.org_a, input="i" * size)
    viewer = make_user(world.org_a, "Viewer")
    assert [len(page) for page in every_page(api, viewer, "/api/run?per_page=20")] == pages
