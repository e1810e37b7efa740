"""The periodic socket housekeeping while the database is down: one plain warning a tick."""

from __future__ import annotations

import asyncio
import logging

from django.db import OperationalError

from vantage6.socketio.server import Namespace, Server


class _DownLiveness:
    """Liveness rows in a database that is unreachable."""

    def __getattr__(self, name: str):
        def unreachable(*_args, **_kwargs):
            raise OperationalError("connection refused")

        return unreachable


def test_a_database_outage_is_one_warning_a_tick_without_a_traceback(caplog):
    server = Server(
        namespaces={"/tasks": Namespace()},
        liveness=_DownLiveness(),
        ping_interval=0.05,
        housekeeping_interval=0.05,
    )

    async def a_few_ticks() -> None:
        server.ensure_housekeeping()
        await asyncio.sleep(0.3)

    with caplog.at_level(logging.WARNING, logger="vantage6.socketio.server"):
        asyncio.run(a_few_ticks())

    records = [r for r in caplog.records if r.name == "vantage6.socketio.server"]
    assert records
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)
    assert (
        "housekeeping skipped, database error: OperationalError, connection refused"
        in records[0].getMessage()
    )
