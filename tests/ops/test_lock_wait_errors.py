"""What a database says when a wait for a lock ended (no outage: no ``sync`` to nodes follows it), as the
drivers raise it from real databases, against what they raise when the database is away."""

from __future__ import annotations

import os
import random
import sqlite3
import threading

import psycopg2
import pytest

from scripts.free_port import free_port
from tests.conftest import requires_services
from vantage6.database_outage import lock_wait


def raised(call) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def test_sqlite_says_locked_for_a_lock_wait_and_not_for_a_missing_file(tmp_path):
    holder = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None, timeout=0.05)
    try:
        assert lock_wait(raised(lambda: waiter.execute("BEGIN IMMEDIATE")))
    finally:
        waiter.close()
        holder.close()
    assert not lock_wait(raised(lambda: sqlite3.connect(tmp_path / "none" / "db.sqlite3")))


@requires_services("postgres")
def test_postgresql_lock_timeout_and_deadlock_are_lock_waits_a_refused_connection_is_not():
    dsn = os.environ["V6_DATABASE_URL"]
    first, second = psycopg2.connect(dsn), psycopg2.connect(dsn)
    key, other = random.sample(range(1, 2**31), 2)
    try:
        with first.cursor() as holding, second.cursor() as waiting:
            holding.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            waiting.execute("SET LOCAL lock_timeout = '50ms'")
            assert lock_wait(raised(lambda: waiting.execute("SELECT pg_advisory_xact_lock(%s)", [key])))
            second.rollback()

            # Each holds the lock the other waits for: PostgreSQL ends one wait after deadlock_timeout.
            waiting.execute("SELECT pg_advisory_xact_lock(%s)", [other])
            errors: list[BaseException] = []

            def wait_for(cursor, lock: int) -> None:
                try:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
                except psycopg2.Error as exc:
                    errors.append(exc)
                    cursor.connection.rollback()  # its locks go: the other's wait ends

            threads = [
                threading.Thread(target=wait_for, args=(holding, other)),
                threading.Thread(target=wait_for, args=(waiting, key)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(errors) == 1 and lock_wait(errors[0]), errors
    finally:
        first.close()
        second.close()

    refused = raised(lambda: psycopg2.connect(host="127.0.0.1", port=free_port(), connect_timeout=5))
    assert isinstance(refused, psycopg2.OperationalError)
    assert not lock_wait(refused)
