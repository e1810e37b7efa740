"""A node's ``algorithm_status_change`` is checked by a read on the event loop's own thread
(``vantage6.db.LoopReader``), with every check of the read on the database thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest
from django.db import connection, connections

from tasks.models import Task
from tasks.services import run_status_read_on_loop, run_status_reported
from tests.conftest import requires_services
from tests.factories import make_collab, make_node, make_org, make_task
from tests.realtime.helpers import make_run, ready_nodes, status_changes
from tests.realtime.live import LIVE
from vantage6.db import loop_reader
from vantage6.db.postgresql.base import AsyncReader
from vantage6.db.sqlite3.base import DirectReader


@pytest.mark.live
def test_a_status_of_a_deleted_run_is_not_relayed(server, live_world, sockets):
    node, other = ready_nodes(sockets, server.url, live_world.node_a, live_world.node_b)
    deleted, kept = make_run(live_world), make_run(live_world)
    node.emit("algorithm_status_change", {"run_id": deleted.pk, "status": "active"})
    assert other.wait_for("algorithm_status_change")["run_id"] == deleted.pk

    Task.objects.using(LIVE).filter(pk=deleted.task_id).delete()
    node.emit("algorithm_status_change", {"run_id": deleted.pk, "status": "completed"})
    node.emit("algorithm_status_change", {"run_id": kept.pk, "status": "active"})

    assert [event["run_id"] for event in status_changes(other)] == [kept.pk]


def _world():
    organization, stranger = make_org(), make_org()
    collaboration = make_collab(organization, stranger)
    node, _ = make_node(organization, collaboration)
    run = make_task(collaboration, organization, organization).runs.get()
    reporter = {"id": node.pk, "org_id": organization.pk, "collaboration_id": collaboration.pk}
    return run, reporter, stranger


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_the_loop_reads_what_the_database_thread_reads():
    run, reporter, stranger = _world()
    report = {"run_id": run.pk, "status": "active"}
    expected = run_status_reported(reporter, report)  # compiles the query, as the first report does
    assert expected is not None and expected["job_id"] == run.task.job_id

    async def reads() -> list:
        return [
            await run_status_read_on_loop(reporter, report),
            await run_status_read_on_loop({**reporter, "org_id": stranger.pk}, report),
            await run_status_read_on_loop(reporter, {"run_id": run.pk + 1000, "status": "active"}),
            await run_status_read_on_loop(reporter, {"run_id": run.pk, "status": "not a status"}),
        ]

    assert asyncio.run(reads()) == [(True, expected), (True, None), (True, None), (True, None)]
    Task.objects.filter(pk=run.task_id).delete()
    assert asyncio.run(run_status_read_on_loop(reporter, report)) == (True, None)


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_read_the_database_does_not_answer_in_time_goes_to_the_database_thread(monkeypatch):
    reader = AsyncReader(connection.get_connection_params())
    monkeypatch.setattr(AsyncReader, "TIMEOUT", 0.3)
    monkeypatch.setattr(AsyncReader, "RETRY_SECONDS", 0.0)

    async def reads() -> tuple:
        started = time.monotonic()
        slow = await reader.rows("SELECT pg_sleep(%s)", [5])
        waited = time.monotonic() - started
        # The reader connects again (at once here: RETRY_SECONDS is 0).
        return slow, waited, await reader.rows("SELECT %s + 1", [1])

    slow, waited, again = asyncio.run(reads())
    assert slow is None and waited < 2
    assert again == [(2,)]


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_database_that_is_away_sends_reads_to_the_database_thread():
    reader = AsyncReader({**connection.get_connection_params(), "port": 1})

    assert asyncio.run(reader.rows("SELECT %s", [1])) is None
    # Not a connection attempt per event while it is away: the next reads go to the thread at once.
    reader._params = connection.get_connection_params()
    assert asyncio.run(reader.rows("SELECT %s", [1])) is None


def test_a_read_that_would_wait_for_a_lock_goes_to_the_database_thread(tmp_path):
    database = tmp_path / "locked.sqlite3"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("CREATE TABLE t (x integer)")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = DirectReader(str(database))
    assert asyncio.run(reader.rows("SELECT x + %s FROM t", [1])) == [(2,)]

    writer.execute("BEGIN EXCLUSIVE")  # a rollback journal: readers wait for the writer
    started = time.monotonic()
    assert asyncio.run(reader.rows("SELECT x FROM t", [])) is None
    assert time.monotonic() - started < 2  # a wait for the lock would last SQLite's 5 s at least
    writer.execute("COMMIT")
    assert asyncio.run(reader.rows("SELECT x FROM t", [])) == [(1,)]


def test_the_tasks_of_a_loop_share_its_reader():
    """Django gives each task its own connection wrapper: a reader (its connection) per wrapper would
    be one per event."""

    async def readers() -> list:
        async def reader():
            return loop_reader(connections["default"])

        return await asyncio.gather(reader(), reader())

    first, second = asyncio.run(readers())
    assert first is second


@requires_services("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_read_leaves_no_query_behind():
    reader = AsyncReader(connection.get_connection_params())

    async def reads() -> tuple:
        slow = asyncio.get_running_loop().create_task(reader.rows("SELECT pg_sleep(%s)", [5]))
        await asyncio.sleep(0.3)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        started = time.monotonic()
        return await reader.rows("SELECT %s + 1", [1]), time.monotonic() - started

    again, waited = asyncio.run(reads())
    assert again == [(2,)] and waited < 2
