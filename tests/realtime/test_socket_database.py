"""The database work of client events runs on a thread of its own: in order, with results and errors
returned to the event, and the calls that wait while it works in one batch."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import DatabaseError

from vantage6.socketio import database
from vantage6.socketio.database import DatabaseThread


def test_calls_run_in_order_on_one_thread_with_their_results_and_errors():
    worker = DatabaseThread("test-db")

    def fails() -> None:
        raise DatabaseError("the database is away")

    async def scenario() -> tuple[list[str], set[str], str]:
        names = await asyncio.gather(
            *(worker.run(lambda i=i: f"{i}:{threading.current_thread().name}") for i in range(5))
        )
        with pytest.raises(DatabaseError, match="away"):
            await worker.run(fails)
        return (
            [name.split(":")[0] for name in names],
            {name.split(":")[1] for name in names},
            threading.current_thread().name,
        )

    order, threads, loop_thread = asyncio.run(scenario())

    assert order == ["0", "1", "2", "3", "4"]
    assert threads == {"test-db"} and loop_thread != "test-db"


def test_calls_that_wait_while_the_thread_works_go_in_one_batch(monkeypatch):
    """One wake-up of the thread and one of the loop per batch: the connection upkeep that runs around
    each batch shows how many there were."""
    upkeep: list[None] = []
    monkeypatch.setattr(database, "close_old_connections", lambda: upkeep.append(None))
    worker = DatabaseThread("test-db-batch")
    busy, release = threading.Event(), threading.Event()

    def first() -> str:
        busy.set()
        release.wait(5)
        return "first"

    async def scenario() -> list[str]:
        running = asyncio.ensure_future(worker.run(first))
        await asyncio.get_running_loop().run_in_executor(None, busy.wait, 5)
        waiting = [asyncio.ensure_future(worker.run(str, i)) for i in range(8)]
        await asyncio.sleep(0.05)
        release.set()
        return [await running, *[await call for call in waiting]]

    assert asyncio.run(scenario()) == ["first", *map(str, range(8))]
    assert len(upkeep) == 4  # before and after each of two batches
