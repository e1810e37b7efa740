"""The benchmark's own logic (bench/api.py, bench/summary.py), without a benchmark: readiness of every
process of a deployment, the warm-up of every process, the spread of wrk's connections, runs beside each
other, and a run that fails loudly instead of giving a verdict on fewer rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scripts.free_port import free_port

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import api  # noqa: E402 - the benchmark's modules live beside each other in bench/
import summary  # noqa: E402

# Two processes serving one address as vantage6.serve does: the listening sockets (SO_REUSEPORT) are made
# first, so connections queue for a process before it accepts; the second starts accepting DELAY s later.
# Each answers any GET with 200 and writes "<pid> <path>" for every request to LOG; a thread a connection,
# so that a kept-alive connection does not hold a new one in the listening queue (daphne does not either).
SERVER = """
import os, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, delay, log = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
socks = [socket.create_server(("127.0.0.1", port), reuse_port=True) for _ in range(2)]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {self.path}\\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
class Server(ThreadingHTTPServer):
    def server_bind(self):
        pass
children = []
for number, sock in enumerate(socks):
    pid = os.fork()
    if pid == 0:
        time.sleep(delay * number)
        server = Server(("127.0.0.1", port), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.serve_forever()
    children.append(pid)
os.wait()
"""
DELAY = 2.0


@pytest.fixture
def two_processes(tmp_path):
    """A target of two processes, the second accepting ``DELAY`` s after the first; its request log."""
    port, log = free_port(), tmp_path / "requests.log"
    log.touch()
    target = api.Target("two", port, 2, ["fake"], "two processes")
    target.proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SERVER), str(port), str(DELAY), str(log)],
        start_new_session=True,
    )
    try:
        yield target, log
    finally:
        api.stop_ours(target)


def served(log: Path) -> list[tuple[int, str]]:
    return [(int(pid), path) for pid, path in (line.split() for line in log.read_text().splitlines())]


def test_ready_when_every_process_answers_not_the_first(two_processes):
    target, log = two_processes
    started = time.monotonic()
    api.wait_up(target)
    assert time.monotonic() - started >= DELAY - 0.5
    assert len({pid for pid, _ in served(log)}) == 2


def test_every_process_answers_every_read_row_before_measuring(two_processes):
    target, log = two_processes
    target.manifest = {
        "users": [{"id": 7, "role": "Researcher", "username": "r"}],
        "organizations": [3],
        "collaborations": [1],
        "nodes": [{"id": 4}],
        "tasks": [9],
        "runs": [11],
    }
    target.tokens = {"root": "t"}
    rows = [api.Row("a", "GET", "/organization/{org_id}"), api.Row("b", "GET", "/user/{user_id}")]
    rows += [
        api.Row("login", "POST", "/token/user", None, "user_login"),
        api.Row("w", "POST", "", pool="kill"),
    ]
    api.warm(target, rows)
    pids = {pid for pid, _ in served(log)}
    assert len(pids) == 2
    for pid in pids:
        paths = [path for who, path in served(log) if who == pid]
        assert paths.count("/api/organization/3") == api.WARM_REQUESTS
        assert paths.count("/api/user/7") == api.WARM_REQUESTS
        assert not [path for path in paths if "token" in path]


def test_split_counts_the_connections_each_process_holds(two_processes):
    target, _ = two_processes
    connections = api.connect_each(target)
    try:
        assert api.split(target, api.server_pids(target)) == [1, 1]
    finally:
        for conn in connections:
            conn.close()


@pytest.mark.parametrize(
    ("split", "connections", "again"),
    [([8, 0], 8, True), ([7, 1], 8, True), ([6, 2], 8, False), ([4, 4], 8, False), ([1, 0], 1, False)],
)
def test_a_run_with_a_process_almost_without_connections_is_run_again(split, connections, again):
    assert api.uneven(split, connections) is again


def test_a_second_run_on_the_same_data_stops(tmp_path):
    with api.claim(tmp_path), pytest.raises(SystemExit, match="another BENCH_PORT_OFFSET"):
        api.claim(tmp_path)
    with api.claim(tmp_path):  # free again once the first run ended
        pass


def test_reuse_refuses_a_manifest_of_other_data(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "OURS_DIR", tmp_path)
    monkeypatch.setattr(api, "DB", api.Database("postgresql", "postgresql://o/orig", "postgres://o/ours"))
    (tmp_path / "seed-postgresql.json").write_text(json.dumps({"data": "postgres://o/other"}))
    target = api.Target("daphne", 1, 1, ["fake"], "")
    with pytest.raises(SystemExit, match="run without --reuse"):
        api.seed([(target, "pw", False)])
    (tmp_path / "seed-postgresql.json").write_text(json.dumps({"data": "postgres://o/ours"}))
    api.seed([(target, "pw", False)])
    assert target.manifest == {"data": "postgres://o/ours"}


def result_file(database: str, cells: dict, run: str = "x") -> dict:
    meta = {"database": database, "run": run, "when": run, "duration": 3, "load": ""}
    return {"file": f"api-{run}-{database}.json", "meta": meta, "results": cells}


def test_gaps_name_every_cell_not_measured_or_failed():
    ok = {"mode": "wrk", "rps": 10.0, "cpu_ms": 1.0}
    files = [
        result_file("sqlite", {"GET /a": {"original": ok, "daphne": ok}, "GET /b": {"original": ok}}),
        result_file("postgresql", {"GET /a": {"original": ok, "daphne": {"mode": "error", "status": 500}}}),
    ]
    assert summary.gaps(files, ["original", "daphne"], ["GET /a", "GET /b"]) == [
        "sqlite: GET /b on daphne: not measured",
        "postgresql: GET /a on daphne: error (500)",
        "postgresql: GET /b on original: not measured",
        "postgresql: GET /b on daphne: not measured",
    ]


def test_a_database_whose_server_did_not_start_fails_the_run(tmp_path, monkeypatch):
    def run_database(db, targets, rows, _args, stamp):
        if db.name == "postgresql":
            raise SystemExit("daphne-2 exited with 1")
        out = tmp_path / f"api-{stamp}-{db.name}.json"
        cell = {"mode": "wrk", "rps": 10.0, "cpu_ms": 1.0}
        cells = {row.label: {t.name: cell for t in targets} for row in rows}
        out.write_text(json.dumps(result_file(db.name, cells, stamp)))
        return out

    monkeypatch.setattr(api, "run_database", run_database)
    monkeypatch.setattr(api, "OURS_DIR", tmp_path)
    monkeypatch.setenv("ORIG_DB_URI", "postgresql://o/orig")
    monkeypatch.setenv("V6_DATABASE_URL", "postgres://o/ours")
    argv = ["--targets", "original,daphne", "--databases", "sqlite,postgresql", "--only", "GET /api/user"]
    monkeypatch.setattr(sys, "argv", ["api.py", *argv])
    monkeypatch.setattr(api.shutil, "which", lambda _: "/usr/bin/wrk")
    with pytest.raises(SystemExit, match="INCOMPLETE RUN") as failed:
        api.main()
    assert "postgresql: daphne-2 exited with 1" in str(failed.value)


def test_the_verdict_is_the_smallest_ratio_over_the_runs():
    def run(stamp: str, rps: float) -> dict:
        cells = {"original": {"mode": "wrk", "rps": 10.0}, "daphne-2": {"mode": "wrk", "rps": rps}}
        return result_file("sqlite", {"GET /a": cells}, stamp)

    verdict = summary.render([run("1", 100.0), run("2", 70.0)])
    assert "over 2 run(s)" in verdict
    assert "7.0x (7.0-10.0) BELOW" in verdict
