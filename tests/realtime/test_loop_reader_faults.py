"""The PostgreSQL reader of the event loop (``AsyncReader``) under the faults of a real database: its
backend terminated, its prepared statement invalidated, a read that waits for a lock, many reads at
once. Each read answers its own query or hands it to the database thread (None); the reader recovers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

import psycopg2
import pytest
from django.conf import settings
from django.db import connection, connections

from tasks.services import run_status_read_on_loop, run_status_reported
from tests.conftest import requires_services
from tests.factories import make_collab, make_node, make_org, make_task
from tests.realtime.helpers import make_run, ready_nodes, status_changes
from tests.realtime.live import LIVE, sql_apart
from vantage6.db.postgresql.base import AsyncReader

pytestmark = requires_services("postgres")


def _apart(query: str, *args: object) -> list[tuple]:
    params = connection.get_connection_params()
    return sql_apart(
        query, *args, **{key: params[key] for key in ("dbname", "user", "password", "host", "port")}
    )


@pytest.fixture
def reader(monkeypatch, transactional_db) -> AsyncReader:  # noqa: ARG001 - needs the database
    monkeypatch.setattr(AsyncReader, "RETRY_SECONDS", 0.0)  # connects again with the next read
    return AsyncReader(connection.get_connection_params())


def test_a_backend_terminated_under_a_read_hands_it_over_and_the_reader_connects_again(reader):
    async def reads() -> tuple:
        (pid,) = (await reader.rows("SELECT pg_backend_pid() + %s", [0]))[0]
        _apart("SELECT pg_terminate_backend(%s, 5000)", pid)  # returns once the backend is gone
        lost = await reader.rows("SELECT %s + 1", [1])  # sent before the loop could hear of it
        again = await reader.rows("SELECT pg_backend_pid() + %s", [0])
        return pid, lost, again

    pid, lost, again = asyncio.run(reads())
    assert lost is None
    assert again is not None and again[0][0] != pid


def test_a_backend_terminated_between_reads_is_replaced_before_the_next_read(reader, monkeypatch):
    monkeypatch.setattr(AsyncReader, "RETRY_SECONDS", 5.0)  # a read handed over would hold the next ones

    async def reads() -> tuple:
        (pid,) = (await reader.rows("SELECT pg_backend_pid() + %s", [0]))[0]
        _apart("SELECT pg_terminate_backend(%s, 5000)", pid)
        # The reader hears of the end of its connection while idle, as the loop turns meanwhile.
        turns, until = 0, time.monotonic() + 0.3
        while time.monotonic() < until:
            await asyncio.sleep(0.01)
            turns += 1
        return pid, await reader.rows("SELECT pg_backend_pid() + %s", [0]), turns

    pid, again, turns = asyncio.run(reads())
    assert again is not None and again[0][0] != pid  # read on the loop, by a new backend
    assert turns > 10  # the ended connection did not keep the loop busy


class _PooledSession(psycopg2.extensions.connection):
    """A server session a pooler keeps (session mode, no reset): closing it returns it to the pool."""

    def close(self) -> None:
        pass


def test_a_session_handed_back_by_a_pooler_gets_statements_of_new_names(reader, monkeypatch):
    pool: list[psycopg2.extensions.connection] = []
    connect = psycopg2.connect

    def pooled(**params: object) -> psycopg2.extensions.connection:
        if not params.get("async_"):  # not the reader's: Django's own connections
            return connect(**params)
        if not pool:
            pool.append(connect(**params, connection_factory=_PooledSession))
        return pool[0]

    monkeypatch.setattr(psycopg2, "connect", pooled)

    async def reads() -> tuple:
        first = await reader.rows("SELECT %s + 1", [1])
        failed = await reader.rows("SELECT 1 / %s", [0])  # the reader lets its connection go
        return first, failed, [await reader.rows("SELECT %s + 2", [1]) for _ in range(2)]

    first, failed, again = asyncio.run(reads())
    psycopg2.extensions.connection.close(pool[0])  # the pool's own close, at the end of the test
    assert (first, failed, again) == ([(2,)], None, [[(3,)], [(3,)]])


def test_a_statement_invalidated_by_a_change_of_its_table_is_prepared_again(reader):
    _apart("DROP TABLE IF EXISTS loop_reader_altered")
    _apart("CREATE TABLE loop_reader_altered (x integer)")
    _apart("INSERT INTO loop_reader_altered VALUES (7)")
    query = "SELECT x FROM loop_reader_altered WHERE x = %s"
    try:

        async def reads() -> tuple:
            before = await reader.rows(query, [7])
            # Its result type changes: the prepared plan must not be used any more.
            _apart("ALTER TABLE loop_reader_altered ALTER COLUMN x TYPE bigint")
            invalidated = await reader.rows(query, [7])
            return before, invalidated, await reader.rows(query, [7])

        before, invalidated, after = asyncio.run(reads())
    finally:
        _apart("DROP TABLE loop_reader_altered")
    assert before == [(7,)]
    assert invalidated in (None, [(7,)])  # never another answer
    assert after == [(7,)]


def test_a_read_that_waits_for_a_lock_is_handed_over_and_leaves_no_wait_behind(reader, monkeypatch):
    monkeypatch.setattr(AsyncReader, "TIMEOUT", 0.3)
    _apart("DROP TABLE IF EXISTS loop_reader_locked")
    _apart("CREATE TABLE loop_reader_locked (x integer)")
    params = connection.get_connection_params()
    holder = psycopg2.connect(**{key: params[key] for key in ("dbname", "user", "password", "host", "port")})
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE loop_reader_locked IN ACCESS EXCLUSIVE MODE")

        async def locked() -> tuple:
            started = time.monotonic()
            return await reader.rows(
                "SELECT count(*) + %s FROM loop_reader_locked", [0]
            ), time.monotonic() - started

        rows, waited = asyncio.run(locked())
        assert rows is None and waited < 1.5
        holder.rollback()
        assert asyncio.run(reader.rows("SELECT count(*) + %s FROM loop_reader_locked", [1])) == [(1,)]
    finally:
        holder.close()
        _apart("DROP TABLE loop_reader_locked")


def test_reads_at_once_each_get_their_own_answer_or_none(reader):
    async def reads() -> list:
        await reader.rows("SELECT %s + 0", [0])  # connected and prepared

        async def one(n: int) -> tuple:
            await asyncio.sleep(0.001 * (n % 7))
            return n, await reader.rows("SELECT %s + 0", [n])

        return await asyncio.gather(*(one(n) for n in range(200)))

    answers = asyncio.run(reads())
    assert all(rows in (None, [(n,)]) for n, rows in answers)
    assert any(rows is not None for _, rows in answers)


@pytest.mark.live
def test_status_reports_go_on_after_the_servers_connections_are_terminated(own_server, live_world, sockets):
    node, other = ready_nodes(sockets, own_server.url, live_world.node_a, live_world.node_b)
    mine, theirs = make_run(live_world), make_run(live_world, live_world.org_b)
    node.emit("algorithm_status_change", {"run_id": mine.pk, "status": "active"})
    assert other.wait_for("algorithm_status_change")["run_id"] == mine.pk

    # Every connection of the server to the database, the loop's reader's too (not the test's own).
    with connections[LIVE].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own,) = cursor.fetchone()
    name = connections[LIVE].settings_dict["NAME"]
    terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s"
    _apart(terminate, name, own)
    for status in ("completed", "failed"):
        node.emit("algorithm_status_change", {"run_id": theirs.pk, "status": status})
        node.emit("algorithm_status_change", {"run_id": mine.pk, "status": status})
        assert [(e["run_id"], e["status"]) for e in status_changes(other, 2.0)] == [(mine.pk, status)]
    log = own_server.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log


def test_a_node_reports_no_run_beyond_the_id_column_nor_one_of_its_organization_elsewhere(transactional_db):  # noqa: ARG001
    organization, other = make_org(), make_org()
    here, elsewhere = make_collab(organization, other), make_collab(organization, other)
    node, _ = make_node(organization, here)
    reporter = {"id": node.pk, "org_id": organization.pk, "collaboration_id": here.pk}
    own = make_task(here, organization, organization).runs.get()
    # A run of the node's organization, but in a collaboration the node does not serve.
    foreign = make_task(elsewhere, organization, organization).runs.get()
    assert run_status_reported(reporter, {"run_id": own.pk, "status": "active"}) is not None  # compiled

    async def reads() -> list:
        return [
            await run_status_read_on_loop(reporter, {"run_id": run_id, "status": "active"})
            for run_id in (foreign.pk, 2**31, 2**63, -(2**63) - 1, 10**40)
        ]

    assert asyncio.run(reads()) == [(True, None)] * 5
    assert run_status_reported(reporter, {"run_id": foreign.pk, "status": "active"}) is None


def test_a_database_host_given_by_name_is_connected_to(reader):
    reader._params = {**reader._params, "host": "localhost"}  # looked up on a thread, then connected

    assert asyncio.run(reader.rows("SELECT %s + 1", [1])) == [(2,)]


# A loopback address for a DNS server that never answers.
_SILENT_DNS = "127.0.0.153"
# In a process of its own: a DNS server that never answers, the reader's first connection to a host by
# name, and a ticker on the loop that notes its longest stall. The resolver waits 2 s for an answer.
_SLOW_DNS = """
import asyncio, json, socket, sys, time
import django
django.setup()
from vantage6.db.postgresql.base import AsyncReader

silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind((sys.argv[1], 53))

async def main():
    stalls = []
    async def ticker():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            stalls.append(time.monotonic() - last)
            last = time.monotonic()
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.1)
    reader = AsyncReader({"dbname": "v6", "user": "v6", "host": "database.example.org", "port": "5432"})
    started = time.monotonic()
    rows = await reader.rows("SELECT %s", [1])
    took = time.monotonic() - started
    await asyncio.sleep(0.1)
    tick.cancel()
    print(json.dumps({"rows": rows, "took": took, "stall": max(stalls)}))

asyncio.run(main())
"""


def test_a_database_host_name_the_dns_does_not_answer_for_does_not_stall_the_loop(tmp_path):
    """libpq looks a host name up on the thread that connects, however asynchronous the connection:
    on the loop's thread, every socket of the process would wait for the DNS."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a resolver configuration of its own needs a mount namespace (root, unshare)")
    resolver = tmp_path / "resolv.conf"
    resolver.write_text(f"nameserver {_SILENT_DNS}\noptions timeout:2 attempts:1\n")
    own_resolver = 'mount --bind "$0" /etc/resolv.conf && exec "$1" -c "$2" "$3"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", own_resolver, resolver, sys.executable, _SLOW_DNS, _SILENT_DNS],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"no mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["rows"] is None  # handed to the database thread
    assert outcome["stall"] < 0.5, outcome
    assert outcome["took"] < 1.5, outcome
