"""What one request of any account can make the database spend: on PostgreSQL a statement is canceled
past ``STATEMENT_TIMEOUT_SECONDS`` and its request answered a clear 503, its transaction rolled back;
the server's own hourly clean-up is not bound (SQLite has no statement timeout)."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from collaborations.models import Organization
from tasks.models import Run, Task
from tasks.services import runs_cleanup_if_due
from tests.factories import bearer, make_org, make_run, make_task, make_user
from vantage6 import database_outage

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no statement timeout"),
]


@override_settings(STATEMENT_TIMEOUT_SECONDS=7)
def test_every_connection_is_made_with_the_statement_timeout_and_without_jit():
    made = psycopg2.connect(**connection.get_connection_params())
    try:
        with made.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout'), current_setting('jit')")
            assert cursor.fetchone() == ("7s", "off")
    finally:
        made.close()


def test_a_request_whose_statement_runs_too_long_is_answered_503_and_changes_nothing(api):
    root = bearer(make_user(make_org("root-org"), "Root"))
    with connection.cursor() as cursor:
        # A write that takes longer than the bound: the insert of this organization waits in a trigger.
        cursor.execute(
            "CREATE FUNCTION slow_insert() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(5); RETURN NEW; END"
            " $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER slow_insert BEFORE INSERT ON organization FOR EACH ROW"
            " WHEN (NEW.name = 'slow') EXECUTE FUNCTION slow_insert()"
        )
        cursor.execute("SET LOCAL statement_timeout = '200ms'")  # the requests run in this transaction

    response = api.post("/api/organization", {"name": "slow"}, format="json", **root)

    assert response.status_code == 503, response.content
    assert response.json()["msg"].startswith("The request took longer than the database allows")
    assert "Retry-After" not in response.headers  # the same request would be canceled again
    assert not database_outage._down  # the database answered: no outage, no sync to the nodes
    assert not Organization.objects.filter(name="slow").exists()
    # The connection serves the next request.
    assert api.post("/api/organization", {"name": "quick"}, format="json", **root).status_code == 201


def test_a_list_whose_statement_waits_too_long_is_answered_503(api, world):
    researcher = bearer(make_user(world.org_a, "Researcher"))
    # Another connection holds table ``run`` (as a long statement would): the page's read waits for it.
    holder = psycopg2.connect(**connection.get_connection_params())
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE run IN ACCESS EXCLUSIVE MODE")
            with connection.cursor() as own:
                own.execute("SET LOCAL statement_timeout = '200ms'")
            response = api.get("/api/run", **researcher)
    finally:
        holder.close()

    assert response.status_code == 503, response.content
    assert response.json()["msg"].startswith("The request took longer than the database allows")
    assert not database_outage._down


def test_the_hourly_clean_up_is_not_bound_by_the_statement_timeout(world, settings):
    settings.RUNS_DATA_CLEANUP_DAYS = 30
    task = make_task(world.collab_ab, world.org_a)
    finished_at = timezone.now() - timedelta(days=40)
    run = make_run(task, world.org_a, status="completed", finished_at=finished_at, result="slow")
    with connection.cursor() as cursor:
        # A clean-up of many runs, as the first one of a large database: its update outlasts the bound.
        cursor.execute(
            "CREATE FUNCTION slow_update() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END"
            " $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER slow_update BEFORE UPDATE ON run FOR EACH ROW EXECUTE FUNCTION slow_update()"
        )
        cursor.execute("SET LOCAL statement_timeout = '200ms'")

    assert runs_cleanup_if_due() == 1

    run.refresh_from_db()
    assert run.result == "" and run.cleanup_at is not None


def _plan_nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", ()) for node in _plan_nodes(child))]


def _rows_out(node: dict) -> int:
    return node["Actual Rows"] * node["Actual Loops"]


# (list page, its model, the order of its rows): page 290 of 3,000 runs, page 140 of 1,500 tasks; unfiltered
# lists are read by SQL compiled once (``vantage6.api.sql.CompiledList``).
DEEP_PAGES = [
    ("/api/run?page=290", Run, ("-id",)),
    ("/api/run?page=290&sort=status,assigned_at", Run, ("status", "assigned_at", "-id")),
    ("/api/result?page=290", Run, ("-id",)),
    ("/api/task?page=140&sort=-name", Task, ("-name", "-id")),
    # filtered lists, read by the ORM's query
    ("/api/run?page=290&collaboration_id={collaboration}", Run, ("-id",)),
    ("/api/task?page=140&sort=-name&collaboration_id={collaboration}", Task, ("-name", "-id")),
]


@pytest.mark.parametrize(("path", "model", "order"), DEEP_PAGES)
def test_a_deep_page_skips_keys_not_whole_rows(api, world, path, model, order):
    tasks = Task.objects.bulk_create(
        Task(
            collaboration=world.collab_ab,
            init_org=world.org_a,
            image="some/image",
            job_id=n,
            name=f"t{n % 7}",
        )
        for n in range(1500)
    )
    Run.objects.bulk_create(
        Run(task=task, organization=org, input="i" * 100, result="r" * 100, log="l" * 100, status=status)
        for task in tasks
        for org, status in ((world.org_a, "completed"), (world.org_b, "failed"))
    )
    researcher = bearer(make_user(world.org_a, "Researcher"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE task, run")

    with CaptureQueriesContext(connection) as queries:
        response = api.get(path.format(collaboration=world.collab_ab.pk), **researcher)

    assert response.status_code == 200
    offset = (int(response.wsgi_request.GET["page"]) - 1) * 10
    expected = list(model.objects.order_by(*order).values_list("id", flat=True)[offset : offset + 10])
    assert [row["id"] for row in response.json()["data"]] == expected
    assert response["total-count"] == str(model.objects.count())
    (statement,) = [query["sql"] for query in queries.captured_queries if "OFFSET" in query["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) {statement}")
        plan = cursor.fetchone()[0][0]["Plan"]
    # The rows a deep page skips (the sort before its OFFSET, the OFFSET itself) are keys and sort columns:
    # only the page's rows are read with their large fields and their tasks.
    skipping = [
        node
        for node in _plan_nodes(plan)
        if (node["Node Type"] in ("Sort", "Incremental Sort") and _rows_out(node) > 11)
        or (node["Node Type"] == "Limit" and _rows_out(node["Plans"][0]) > 11)
    ]
    assert skipping
    wide = {"input", "result", "log", "image", "description"}
    for node in skipping:
        assert not wide & {column.rsplit(".", 1)[-1] for column in node["Output"]}, node["Node Type"]
