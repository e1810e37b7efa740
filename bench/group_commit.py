"""SQLite alone: what committing several writers' transactions with one fsync would give (see
bench/README.md, "Tenth pass: SQLite's writers on two processes").

Writer threads of one process run a small write (a read, an update, an insert, 0.4 ms of Python between
them, as a run update) on a database of its own (WAL, ``synchronous=FULL``), queued on one lock, either

- ``each``: every transaction on the thread's own connection, ``BEGIN IMMEDIATE`` ... ``COMMIT`` (one
  fsync each): what the server does now, or
- ``batch``: every transaction in a ``SAVEPOINT`` of one shared connection; a writer that finds another
  already waiting (and the batch below ``--limit``) leaves the transaction open for it and waits for its
  commit; the last one commits the batch, then answers all of them. A failing writer (``--fail-every``)
  rolls back to its savepoint only.

At the end the rows are counted: every write that was answered as done is there, no failed one is.

    .venv/bin/python bench/group_commit.py --threads 8 --writes 100 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time


class Failed(Exception):
    pass


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=20)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def write(connection: sqlite3.Connection, key: int, fail: bool) -> None:
    connection.execute("SELECT status FROM run WHERE id = ?", (key % 500,)).fetchall()
    spin(0.0002)
    connection.execute("UPDATE run SET status = status + 1 WHERE id = ?", (key % 500,))
    spin(0.0002)
    connection.execute("INSERT INTO audit (key, payload) VALUES (?, ?)", (key, "x" * 200))
    if fail:
        raise Failed


class Batches:
    """One shared connection; the writers of a batch in savepoints, committed by the batch's last."""

    def __init__(self, path: str, limit: int) -> None:
        self.connection = connect(path)
        self.limit = limit
        self.turn = threading.Lock()
        self.count = threading.Lock()
        self.queued = 0
        self.open = False
        self.members: list[tuple[threading.Event, list]] = []  # waiting for the batch's commit
        self.commits = 0

    def run(self, key: int, fail: bool) -> bool:
        with self.count:
            self.queued += 1
        self.turn.acquire()
        with self.count:
            self.queued -= 1
        connection = self.connection
        if not self.open:
            connection.execute("BEGIN IMMEDIATE")
            self.open = True
        connection.execute("SAVEPOINT member")
        done = True
        try:
            write(connection, key, fail)
        except Failed:
            connection.execute("ROLLBACK TO member")
            done = False
        connection.execute("RELEASE member")
        with self.count:
            keep_open = self.queued > 0 and len(self.members) + 1 < self.limit
        if keep_open:
            answered, outcome = threading.Event(), []
            self.members.append((answered, outcome))
            self.turn.release()
            answered.wait()
            return done and outcome == [True]
        members, self.members = self.members, []
        try:
            connection.execute("COMMIT")
            committed = True
        except sqlite3.Error:
            connection.execute("ROLLBACK")
            committed = False
        self.open = False
        self.commits += 1
        self.turn.release()
        for answered, outcome in members:
            outcome.append(committed)
            answered.set()
        return done and committed


def measure(mode: str, threads: int, writes: int, limit: int, fail_every: int) -> str:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.sqlite3")
        setup = connect(path)
        setup.execute("CREATE TABLE run (id INTEGER PRIMARY KEY, status INTEGER NOT NULL)")
        setup.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, key INTEGER NOT NULL, payload TEXT)")
        setup.executemany("INSERT INTO run VALUES (?, 0)", [(i,) for i in range(500)])
        batches = Batches(path, limit)
        turn = threading.Lock()
        commits = [0]
        latencies: list[float] = []
        answered_done: list[int] = []

        def each(connection: sqlite3.Connection, key: int, fail: bool) -> bool:
            with turn:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    write(connection, key, fail)
                except Failed:
                    connection.execute("ROLLBACK")
                    return False
                connection.execute("COMMIT")
                commits[0] += 1
                return True

        def writer(number: int) -> None:
            connection = connect(path)
            for index in range(writes):
                key = number * writes + index
                fail = fail_every > 0 and key % fail_every == 0
                start = time.perf_counter()
                done = each(connection, key, fail) if mode == "each" else batches.run(key, fail)
                latencies.append(time.perf_counter() - start)
                if done:
                    answered_done.append(key)

        workers = [threading.Thread(target=writer, args=(number,)) for number in range(threads)]
        start, cpu = time.perf_counter(), time.process_time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        stored = sorted(key for (key,) in setup.execute("SELECT key FROM audit"))
        assert stored == sorted(answered_done), "an answered write is missing, or a failed one stored"
        latencies.sort()
        count = len(latencies)
        return (
            f"| {mode} | {limit if mode == 'batch' else 1} | {count / wall:.0f} | "
            f"{commits[0] + batches.commits} | {latencies[count // 2] * 1e3:.1f} | "
            f"{latencies[int(count * 0.99)] * 1e3:.1f} | {cpu / count * 1e3:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--writes", type=int, default=100, help="per thread")
    parser.add_argument("--limit", type=int, default=4, help="most transactions in one commit")
    parser.add_argument("--fail-every", type=int, default=0, help="every n-th write fails (0: none)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print("| mode | batch limit | writes/s | commits | p50 ms | p99 ms | CPU ms per write |")
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for mode in ("each", "batch"):
            print(measure(mode, args.threads, args.writes, args.limit, args.fail_every), flush=True)


if __name__ == "__main__":
    main()
