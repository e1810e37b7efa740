"""REST benchmark: this server against vantage6-server 4.15.2, on the same data, on this machine.

    .venv/bin/python bench/api.py --preset evidence    # issue 14's verdict, SQLite and PostgreSQL
    .venv/bin/python bench/api.py                      # everything (~15 min): fresh data, all rows
    .venv/bin/python bench/api.py --targets original,daphne --duration 5
    .venv/bin/python bench/api.py --reuse --only task  # servers and data of the last run, some rows
    .venv/bin/python bench/api.py --targets original,daphne --only " c" --skip-300  # writes

What it does, all on 127.0.0.1 and bounded in time:
1. for each database of ``--databases`` (``sqlite``; ``postgresql``: ``ORIG_DB_URI`` and
   ``V6_DATABASE_URL``, both dropped and created afresh), starts the original
   (``bench/setup_original.sh``: uWSGI + gevent, one worker) and this server under each deployment
   of ``--targets`` (all on one database; a target is up once every one of its processes answers),
   fills both through the API (``bench/seed.py``), and has every process of every target answer each
   read row a few times;
2. for every row (endpoint) and every target in turn, probes once, then runs ``wrk`` for
   ``--duration`` seconds with ``--connections`` connections (after a 1 s warm-up; on several
   processes again when wrk's connections were spread very unevenly over them, see ``spread_wrk``).
   A row answering 404/405/501 is marked ``missing``, any other failure ``error``. A row slower than
   1 s a request (node login on the original) is timed with sequential requests instead (``seq``);
3. prepares the write rows on both servers (``bench/writes.py``) and measures each write at
   concurrency 1 and 8 (``c1``, ``c8``): wrk walks through a pool of requests, so that every
   request succeeds (fresh runs to complete, fresh tasks to kill, new user names), grown before each
   wrk run to what the row's measured rate needs (a cell that still runs out is marked ``ran_out``);
4. grows both datasets to 300 nodes and measures node login again;
5. prints the tables (requests per second, ratio to the original, p50/p99 latency) and keeps them in
   ``bench/results/`` (latest.md, and a JSON file per run and database, with the load average at the
   start and end of every cell), then the verdict against issue 14's targets (``bench/summary.py``);
   a database that failed or a cell not measured ends the run with status 1 instead of a verdict.

Rows run target after target for each endpoint, so that load from elsewhere on the machine hits all
targets alike; ``--rounds N`` repeats every measurement and keeps the best. Each ``BENCH_PORT_OFFSET``
has data of its own (``bench/.ours-<offset>``, ``bench/.original/state-<offset>``), held by one run at a time.
Needs ``wrk`` (``apt-get install wrk``); the extra deployments need gunicorn and uvicorn[standard],
which are installed into ``bench/.deps`` on first use. ``daphne-2`` (``make run`` with RabbitMQ on
this 2-core machine) needs a broker: ``BENCH_RABBITMQ_URI=amqp://...`` (scripts/services-start.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import summary
from writes import Pool, WriteData, prepare, socket_status_changes

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
ORIG_DIR = BENCH / ".original"  # the original's venv
RESULTS = BENCH / "results"
DEPS = BENCH / ".deps"
# BENCH_PORT_OFFSET moves every server of a run to other ports, so that two runs can share a machine;
# each offset has data of its own (this server's, the original's database, pid file and manifests).
PORT_OFFSET = int(os.environ.get("BENCH_PORT_OFFSET", "0"))
_SUFFIX = f"-{PORT_OFFSET}" if PORT_OFFSET else ""
OURS_DIR = BENCH / f".ours{_SUFFIX}"
ORIG_STATE = ORIG_DIR / f"state{_SUFFIX}" if PORT_OFFSET else ORIG_DIR
ORIG_PORT = 7602 + PORT_OFFSET
os.environ["ORIG_PORT"] = str(ORIG_PORT)  # for setup_original.sh
OURS_ROOT_PASSWORD = "Bench-root-password-1!"
# Fixed secrets: tokens stay valid across the restarts of the deployments of one dataset.
OURS_ENV = {
    "V6_DATA_DIR": str(OURS_DIR / "data"),
    "V6_JWT_SECRET_KEY": "bench-jwt-secret-0123456789abcdef0123456789abcdef",
    "V6_SECRET_KEY": "bench-django-secret-0123456789abcdef0123456789abcdef",
    "V6_ROOT_PASSWORD": OURS_ROOT_PASSWORD,
    "V6_LOG_LEVEL": "warning",
    "V6_DEBUG": "false",
    # The socket benchmarks send as many events over one socket as the server relays, over as many sockets
    # of one node as the row's concurrency (vantage6 bounds neither).
    "V6_SOCKET_PACKET_BURST": "1000000",
    "V6_SOCKET_PACKET_RATE": "1000000",
    "V6_SOCKET_SESSIONS_PER_NODE": "64",
}
SLOW_SECONDS = 1.0
# The 1-minute load average of the machine when a cell started and ended (``load`` of each result).
LOAD = "load"


@dataclass
class Database:
    """The database both servers run on: ``original`` for vantage6 (SQLAlchemy URI), ``ours`` for this
    server (``V6_DATABASE_URL``); None: a SQLite file of each."""

    name: str
    original: str | None = None
    ours: str | None = None

    @property
    def manifest(self) -> str:
        return "seed.json" if self.name == "sqlite" else f"seed-{self.name}.json"


def databases(names: str) -> list[Database]:
    found = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name == "sqlite":
            found.append(Database("sqlite"))
        elif name == "postgresql":
            original, ours = os.environ.get("ORIG_DB_URI", ""), os.environ.get("V6_DATABASE_URL", "")
            if not original.startswith("postgres") or not ours.startswith("postgres"):
                raise SystemExit(
                    "postgresql needs ORIG_DB_URI=postgresql://… and V6_DATABASE_URL=postgres://…"
                )
            found.append(Database("postgresql", original, ours))
        else:
            raise SystemExit(f"unknown database {name!r} (sqlite, postgresql)")
    return found


# The database of the run under way (``--databases`` runs them one after another).
DB = Database("sqlite")


def reset_postgres(url: str) -> None:
    """Drop and create the database of ``url``: every run starts on an empty one."""
    import psycopg2  # the project's own driver, only needed for PostgreSQL runs

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    conn = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password,
        dbname="postgres",
    )  # fmt: skip
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def original_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ORIG_DB_URI"}
    env["ORIG_STATE"] = str(ORIG_STATE)
    if DB.original:
        env["ORIG_DB_URI"] = DB.original
    return env


@dataclass
class Target:
    name: str
    port: int
    workers: int
    command: list[str] | None  # None: the original, started by setup_original.sh
    note: str
    needs_deps: bool = False
    env: dict = field(default_factory=dict)  # variables of this deployment ("RABBITMQ": the broker's URI)
    proc: subprocess.Popen | None = None
    manifest: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)
    writes: WriteData | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def _serve(kind: str, port: int, workers: int) -> list[str]:
    return [str(VENV_PY), str(BENCH / "serve.py"), kind, "--port", str(port), "--workers", str(workers)]


TARGETS = {
    "original": Target("original", ORIG_PORT, 1, None, "vantage6-server 4.15.2, uWSGI + gevent, 1 worker"),
    "daphne": Target(
        "daphne",
        7611 + PORT_OFFSET,
        1,
        [str(VENV_PY), "-m", "vantage6.serve"],
        "ours, daphne as `make run` starts it without RabbitMQ (1 process)",
        env={"V6_HOST": "127.0.0.1", "V6_PORT": str(7611 + PORT_OFFSET)},
    ),
    "daphne-2": Target(
        "daphne-2",
        7616 + PORT_OFFSET,
        2,
        [str(VENV_PY), "-m", "vantage6.serve"],
        "ours, daphne as `make run` starts it with RabbitMQ on 2 cores (2 processes, one address)",
        env={
            "V6_HOST": "127.0.0.1",
            "V6_PORT": str(7616 + PORT_OFFSET),
            "V6_WORKERS": "2",
            "V6_RABBITMQ_URI": "RABBITMQ",
        },
    ),
    "uvicorn": Target(
        "uvicorn",
        7612 + PORT_OFFSET,
        1,
        _serve("uvicorn", 7612 + PORT_OFFSET, 1),
        "ours, uvicorn+uvloop, 1 process",
        True,
    ),
    "gunicorn-wsgi": Target(
        "gunicorn-wsgi",
        7613 + PORT_OFFSET,
        1,
        _serve("gunicorn-wsgi", 7613 + PORT_OFFSET, 1),
        "ours, gunicorn gthread WSGI, 1 worker",
        True,
    ),
    "uvicorn-2": Target(
        "uvicorn-2",
        7614 + PORT_OFFSET,
        2,
        _serve("uvicorn", 7614 + PORT_OFFSET, 2),
        "ours, uvicorn+uvloop, 2 processes",
        True,
    ),
    "gunicorn-wsgi-2": Target(
        "gunicorn-wsgi-2",
        7615 + PORT_OFFSET,
        2,
        _serve("gunicorn-wsgi", 7615 + PORT_OFFSET, 2),
        "ours, gunicorn gthread WSGI, 2 workers",
        True,
    ),
}


@dataclass
class Row:
    label: str
    method: str
    path: str  # may hold {placeholders} filled from the manifest
    auth: str | None = "root"  # "root", "researcher" or None
    body: str | None = None  # a manifest-dependent body key: "user_login", "node_login"
    phase: str = "main"  # "main" rows run on the seeded data, "nodes300" after growing to 300 nodes
    pool: str | None = None  # a write row: the requests of this pool of ``bench/writes.py``
    connections: int | None = None  # instead of ``--connections``


SOCKET = "socket"  # the row measured over Socket.IO instead of wrk
# The writes a network lives on, each at concurrency 1 and 8 (see bench/writes.py).
WRITES = [
    ("PATCH /api/run/<id> (node, status)", "run_status"),
    ("PATCH /api/run/<id> (node, 10 KiB result)", "run_complete"),
    ("POST /api/task (5 organizations)", "task5"),
    ("POST /api/task (50 organizations)", "task50"),
    ("POST /api/task (container subtask)", "subtask"),
    ("POST /api/port (node)", "port"),
    ("POST /api/kill/task", "kill"),
    ("POST /api/user (bcrypt)", "user"),
    ("algorithm_status_change (node socket)", SOCKET),
]


ROWS = [
    Row("GET /api/version (no auth, no db)", "GET", "/version", None),
    Row("POST /api/token/user (bcrypt)", "POST", "/token/user", None, "user_login"),
    Row("POST /api/token/node (30 nodes)", "POST", "/token/node", None, "node_login"),
    Row("GET /api/user", "GET", "/user"),
    Row("GET /api/user/<id>", "GET", "/user/{user_id}"),
    Row("GET /api/organization", "GET", "/organization"),
    Row("GET /api/organization/<id>", "GET", "/organization/{org_id}"),
    Row("GET /api/collaboration", "GET", "/collaboration"),
    Row("GET /api/collaboration/<id>", "GET", "/collaboration/{collab_id}"),
    Row("GET /api/node", "GET", "/node"),
    Row("GET /api/node/<id>", "GET", "/node/{node_id}"),
    Row("GET /api/task", "GET", "/task"),
    Row("GET /api/task/<id>", "GET", "/task/{task_id}"),
    Row("GET /api/run", "GET", "/run"),
    Row("GET /api/run?include=task", "GET", "/run?include=task"),
    Row("GET /api/run/<id>", "GET", "/run/{run_id}"),
    Row("GET /api/task (researcher)", "GET", "/task", "researcher"),
    Row("GET /api/run (researcher)", "GET", "/run", "researcher"),
    Row("GET /api/node (as a node)", "GET", "/node", "node"),
    Row("GET /api/task?per_page=100", "GET", "/task?per_page=100"),
    *(
        Row(f"{label} c{c}", "POST", "", None, pool=pool, phase="writes", connections=c)
        for label, pool in WRITES
        for c in (1, 8)
    ),
    Row("POST /api/token/node (300 nodes)", "POST", "/token/node", None, "node_login", "nodes300"),
]


# --- processes --------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def request(base: str, method: str, path: str, token: str | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", int(base.split(":")[2].split("/")[0]), timeout=300)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    try:
        conn.request(method, "/api" + path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, raw, time.perf_counter() - started


def processes(target: Target) -> int:
    """How many processes serve the target's connections (the original's one worker sits behind
    uWSGI's HTTP router, which holds its connections)."""
    return target.workers if target.command else 1


def connection_owners(pids: list[int], port: int) -> dict[int, int]:
    """The established connections to ``port`` that ``pids`` hold: {client's port: pid}."""
    inodes = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes[int(link[8:-1])] = pid
    owners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                    owners[int(remote.rsplit(":", 1)[1], 16)] = inodes[inode]
    return owners


def split(target: Target, pids: list[int]) -> list[int]:
    """The target's connections per process now, most first (a process with none: 0)."""
    counts: dict[int, int] = {}
    for pid in connection_owners(pids, target.port).values():
        counts[pid] = counts.get(pid, 0) + 1
    found = sorted(counts.values(), reverse=True)
    return found + [0] * (processes(target) - len(found))


def connect_each(target: Target, seconds: float = 60) -> list[http.client.HTTPConnection]:
    """A kept-alive connection to every process of the target, each of which has answered
    ``GET /api/version`` on it: new connections until every process holds one (the kernel spreads
    them over the processes' sockets, SO_REUSEPORT), those to a process already held closed."""
    deadline = time.monotonic() + seconds
    held: dict[int, http.client.HTTPConnection] = {}
    while len(held) < processes(target):
        if target.proc is not None and target.proc.poll() is not None:
            raise SystemExit(f"{target.name} exited with {target.proc.returncode}; see {_log_path(target)}")
        if time.monotonic() > deadline:
            for conn in held.values():
                conn.close()
            raise SystemExit(
                f"{target.name}: {len(held)} of its {processes(target)} processes answered on port "
                f"{target.port} within {seconds:.0f} s; see {_log_path(target)}"
            )
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=5)
        try:
            conn.request("GET", "/api/version")
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            time.sleep(0.3)
            continue
        owner = 0  # one process: whoever answered
        if processes(target) > 1:
            owner = connection_owners(server_pids(target), target.port).get(conn.sock.getsockname()[1], -1)
        if response.status != 200 or owner in held or owner == -1:
            conn.close()
        else:
            held[owner] = conn
    return list(held.values())


def wait_up(target: Target, seconds: float = 60) -> None:
    """Until every process of the target answers (not only the first one to come up)."""
    for conn in connect_each(target, seconds):
        conn.close()


# Requests of each read row every process of every target answers before the first measured cell.
WARM_REQUESTS = 3


def warm(target: Target, rows: list[Row]) -> None:
    """Every process of the target answers each of the read ``rows`` a few times, the original's
    included, so that no measured cell pays a process's first requests (imports, compiled queries,
    caches) and every target starts alike."""
    connections = connect_each(target)
    try:
        for row in rows:
            token = target.tokens.get(row.auth) if row.auth else None
            if row.pool or row.body or (row.auth and token is None):
                continue  # the writes and logins have warm-ups of their own
            path, _ = resolve(row, target)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for conn in connections:
                for _ in range(WARM_REQUESTS):
                    try:
                        conn.request(row.method, "/api" + path, headers=headers)
                        conn.getresponse().read()
                    except (OSError, http.client.HTTPException):
                        conn.close()  # a server that closed it: the next request opens another
    finally:
        for conn in connections:
            conn.close()


def _log_path(target: Target) -> Path:
    return OURS_DIR / f"{target.name}.log"


def ours_env(target: Target | None = None) -> dict:
    """The environment of this server: the benchmark's variables, then the target's own; a broker only
    for targets that ask for one (``BENCH_RABBITMQ_URI``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("V6_RABBITMQ_URI", "V6_DATABASE_URL")}
    env.update(OURS_ENV, PYTHONUNBUFFERED="1")
    if DB.ours:
        env["V6_DATABASE_URL"] = DB.ours
    for name, value in (target.env if target else {}).items():
        if value == "RABBITMQ":
            value = os.environ.get("BENCH_RABBITMQ_URI", "")
            if not value:
                raise SystemExit(
                    f"{target.name} needs a RabbitMQ: set BENCH_RABBITMQ_URI (see bench/README.md)"
                )
        env[name] = value
    return env


def start_ours(target: Target) -> None:
    OURS_DIR.mkdir(parents=True, exist_ok=True)
    out = _log_path(target).open("wb")
    target.proc = subprocess.Popen(
        target.command,
        cwd=ROOT,
        env=ours_env(target),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_up(target)


def stop_ours(target: Target) -> None:
    if target.proc is None or target.proc.poll() is not None:
        return
    # The process group is the one this script created for this server (start_new_session).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(target.proc.pid, signal.SIGTERM)
    try:
        target.proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(target.proc.pid, signal.SIGKILL)
        target.proc.wait(5)


def ensure_deps() -> None:
    if (DEPS / "uvicorn").exists() and (DEPS / "gunicorn").exists():
        return
    log("installing gunicorn and uvicorn[standard] into bench/.deps ...")
    subprocess.run(
        [str(VENV_PY), "-m", "pip", "install", "-q", "--target", str(DEPS), "gunicorn", "uvicorn[standard]"],
        check=True,
    )


def seed(jobs: list[tuple[Target, str, bool]], extend: int | None = None) -> None:
    """Read the manifest of each (target, root password, fresh) job, seeding the fresh ones (or all of
    them to ``extend`` nodes) first, all servers at once."""
    running = []
    for target, root_password, fresh in jobs:
        manifest = (ORIG_STATE if target.command is None else OURS_DIR) / DB.manifest
        if fresh or extend:
            cmd = [sys.executable, str(BENCH / "seed.py"), "--url", target.base, "--out", str(manifest)]
            cmd += ["--root-password", root_password]
            if extend:
                cmd += ["--extend-nodes", str(extend)]
            log(f"seeding {target.name}{f' to {extend} nodes' if extend else ''} ...")
            running.append(subprocess.Popen(cmd))
    if any(proc.wait() for proc in running):
        raise SystemExit("seeding failed")
    for target, _, fresh in jobs:
        path = (ORIG_STATE if target.command is None else OURS_DIR) / DB.manifest
        target.manifest = json.loads(path.read_text())
        if fresh or extend:  # the manifest says which data it describes, for a later --reuse to check
            target.manifest["data"] = data_of(target)
            path.write_text(json.dumps(target.manifest, indent=1))
        elif target.manifest.get("data") != data_of(target):
            raise SystemExit(
                f"--reuse: {path} describes the data of {target.manifest.get('data')!r}, this run's "
                f"{target.name} has {data_of(target)!r}: run without --reuse"
            )


def data_of(target: Target) -> str:
    """Where the target's data lives (a database URL or the SQLite file)."""
    if target.command is None:
        return DB.original or str(ORIG_STATE / "data" / "original.sqlite")
    return DB.ours or str(OURS_DIR / "data" / "vantage6.sqlite3")


def check_reused(target: Target) -> None:
    """Stop a ``--reuse`` run whose server no longer holds the data of its manifest (another run
    started afresh on the same database in between)."""
    researcher = next(u for u in target.manifest["users"] if u["role"] == "Researcher")
    status, raw, _ = request(target.base, "GET", f"/user/{researcher['id']}", target.tokens["root"])
    if status != 200 or json.loads(raw).get("username") != researcher["username"]:
        raise SystemExit(
            f"--reuse: {target.name} does not hold the data of its manifest (user {researcher['id']}: "
            f"{status} {raw[:100]!r}); another run replaced it: run without --reuse"
        )


def claim(directory: Path):
    """Hold ``directory`` for this run (until the process ends), or stop if another run holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = (directory / "run.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(
            f"another bench/api.py run uses {directory} (BENCH_PORT_OFFSET={PORT_OFFSET}): "
            "give this one another BENCH_PORT_OFFSET"
        ) from None
    return lock


def login(target: Target) -> None:
    m = target.manifest
    status, raw, _ = request(
        target.base,
        "POST",
        "/token/user",
        body=json.dumps({"username": "root", "password": m["root"]["password"]}).encode(),
    )
    if status != 200:
        raise SystemExit(f"{target.name}: root login failed: {status} {raw[:200]!r}")
    target.tokens["root"] = json.loads(raw)["access_token"]
    researcher = next(u for u in m["users"] if u["role"] == "Researcher")
    status, raw, _ = request(
        target.base,
        "POST",
        "/token/user",
        body=json.dumps({"username": researcher["username"], "password": m["user_password"]}).encode(),
    )
    if status == 200:
        target.tokens["researcher"] = json.loads(raw)["access_token"]
    node = m["nodes"][0]
    status, raw, _ = request(
        target.base, "POST", "/token/node", body=json.dumps({"api_key": node["api_key"]}).encode()
    )
    if status == 200:
        target.tokens["node"] = json.loads(raw)["access_token"]


# --- measuring --------------------------------------------------------------------------------------


def resolve(row: Row, target: Target) -> tuple[str, list[bytes]]:
    """The row's path and the bodies its requests take in turn (none, one or several)."""
    m = target.manifest
    researcher = next(u for u in m["users"] if u["role"] == "Researcher")
    values = {
        "user_id": researcher["id"],
        "org_id": m["organizations"][0],
        "collab_id": m["collaborations"][0],
        "node_id": m["nodes"][0]["id"],
        "task_id": m["tasks"][len(m["tasks"]) // 2],
        "run_id": m["runs"][0],
    }
    bodies = []
    if row.body == "user_login":
        # Every seeded user in turn: concurrent logins of one account count as guesses in flight
        # towards its lock-out on this server, which would refuse the right password at c8.
        bodies = [{"username": u["username"], "password": m["user_password"]} for u in m["users"]]
    elif row.body == "node_login":
        # A node in the middle of the id order of the dataset of the row (30 or 300 nodes): the
        # original compares the key with every node up to the matching one, in id order.
        middle = (300 if row.phase == "nodes300" else 30) // 2
        bodies = [{"api_key": m["nodes"][middle]["api_key"]}]
    return row.path.format(**values), [json.dumps(b).encode() for b in bodies]


LUA = """wrk.method = {method}
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""
# Several bodies: each request takes the next one.
ROTATE_LUA = """local bodies = {bodies}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


def _lua_str(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, script: Path, duration: float, connections: int) -> dict:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "60s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90)
    out = done.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {done.stderr or out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "requests": total,
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else "",
        "mode": "wrk",
        "pool_used": sum(int(n) for n in re.findall(r"^POOL_USED (\d+)$", out, re.M)),
    }


# Runs of a cell on several processes until wrk's connections are spread over them (``uneven``).
SPREAD_ATTEMPTS = 3


def uneven(split: list[int], connections: int) -> bool:
    """Whether a process holds less than half of its even share of the ``connections`` (never when
    there are fewer connections than processes)."""
    return connections >= len(split) and min(split) < connections / len(split) / 2


def spread_wrk(target: Target, pids: list[int], url: str, script: Path, duration: float, connections: int):
    """A wrk run with the server's CPU time per request; on a target of several processes, with how
    wrk's connections were spread over them (read halfway through). The kernel places each connection
    on a process by a hash of its addresses, so 8 connections land 7 and 1 (or 8 and 0) on two
    processes in 1 of 14 runs: the process of one connection then mostly waits for wrk, and the run
    measures about one process, not the deployment. A run that left a process less than half its even
    share is run again (every run's split is kept in ``splits``)."""
    several, splits = processes(target) > 1, []
    for _ in range(SPREAD_ATTEMPTS):
        seen: list[list[int]] = []
        sample = threading.Timer(duration / 2, lambda into=seen: into.append(split(target, pids)))
        if several:
            sample.start()
        cpu = cpu_seconds(pids)
        try:
            result = run_wrk(url, script, duration, connections)
        finally:
            if several:
                sample.cancel()
                sample.join()
        result["cpu_ms"] = (cpu_seconds(pids) - cpu) * 1000 / max(result["requests"], 1)
        if not seen:
            return result
        splits += seen
        result["splits"] = list(splits)
        if not uneven(seen[0], connections):
            return result
        log(f"  {url} on {target.name}: connections per process {seen[0]}, again")
    return result


def run_sequential(target: Target, row: Row, path: str, bodies: list[bytes], token, budget: float) -> dict:
    samples, started = [], time.monotonic()
    while not samples or (time.monotonic() - started < budget and len(samples) < 20):
        body = bodies[len(samples) % len(bodies)] if bodies else None
        status, _, seconds = request(target.base, row.method, path, token, body)
        if status >= 300:
            return {"mode": "error", "status": status}
        samples.append(seconds)
    return sequential_result(samples, time.monotonic() - started)


def sequential_result(samples: list[float], elapsed: float) -> dict:
    """The columns of a row timed one request at a time."""
    return {
        "rps": len(samples) / elapsed,
        "p50": statistics.median(samples) * 1000,
        "p99": max(samples) * 1000,
        "requests": len(samples),
        "non2xx": 0,
        "socket_errors": "",
        "mode": "seq",
    }


def server_pids(target: Target) -> list[int]:
    """The server's processes: its root process and all descendants (workers, uWSGI's router)."""
    root = target.proc.pid if target.proc is not None else int((ORIG_STATE / "uwsgi.pid").read_text())
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        pids += children
        frontier = children
    return pids


def settle(pids: list[int], limit: float = 60) -> None:
    """Wait until the server has finished what wrk left in flight (its CPU time stops growing), so that
    the next measurement's CPU time is its own."""
    deadline, last = time.monotonic() + limit, cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = cpu_seconds(pids)
        if now - last < 0.03:
            return
        last = now


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


POOL_LUA = """local bodies = {bodies}
local reqs = {reqs}
local cycle = {cycle}
i = 0  -- global: done() reads it to tell how many requests were made
local threads = {{}}
setup = function(thread)
  table.insert(threads, thread)
end
done = function()
  for _, thread in ipairs(threads) do
    io.write(string.format("POOL_USED %d\\n", thread:get("i")))
  end
end
request = function()
  i = i + 1
  local n = i
  if n > #reqs then
    n = cycle and ((i - 1) % #reqs) + 1 or #reqs
  end
  local r = reqs[n]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = r[4]
  return wrk.format(r[1], r[2], wrk.headers, bodies[r[3]])
end
"""


def _pool_script(pool: Pool) -> Path:
    """A wrk script sending the pool's next requests (bodies written once, referred to by index)."""
    bodies: dict[str, int] = {}
    reqs = []
    for method, path, body, bearer in pool.batch():
        index = bodies.setdefault(body, len(bodies) + 1)
        reqs.append(f"{{{_lua_str(method)}, {_lua_str(path)}, {index}, {_lua_str(bearer)}}}")
    lua = POOL_LUA.format(
        bodies="{" + ",\n".join(_lua_str(b) for b in bodies) + "}",
        reqs="{" + ",\n".join(reqs) + "}",
        cycle="true" if pool.cycle else "false",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
    return Path(fh.name)


# A consuming pool holds this many times what the row's last measured rate needs for a wrk run (a run
# that uses it up anyway is repeated).
POOL_MARGIN = 1.5


def measure_pool(target: Target, row: Row, args) -> dict:
    """A write row: wrk walks through the row's pool of requests (bench/writes.py). A consuming pool
    is grown before each wrk run from the rate measured last (the probe's latency at first); a run that
    uses it up is repeated once on a larger pool, and marked ``ran_out`` if it used it up again."""
    pool = target.writes.pools[row.pool]
    pool.ensure(1)
    items = pool.batch(1)
    if not items:
        return {"mode": "error", "status": "pool empty"}
    method, path, body, bearer = items[0]
    status, raw, seconds = request(
        target.base, method, path.removeprefix("/api"), bearer.split()[1], body.encode()
    )
    pool.take(1)
    if status in (404, 405, 501):
        return {"mode": "missing", "status": status}
    if status >= 300:
        log(f"  {row.label} on {target.name}: {status} {raw[:300]!r}")
        return {"mode": "error", "status": status, "body": raw[:200].decode(errors="replace")}
    pids = server_pids(target)
    connections = row.connections or args.connections
    rate = min(connections, os.cpu_count() or 1) / max(seconds, 0.001)
    best = None
    for measured, duration in enumerate((1, *([args.duration] * args.rounds))):  # a warm-up first
        for attempt in (1, 2):
            pool.ensure(int(rate * duration * POOL_MARGIN) + 2 * connections)
            left = pool.left()
            script = _pool_script(pool)
            try:
                cpu = cpu_seconds(pids)
                result = run_wrk(target.base, script, duration, connections)
                result["cpu_ms"] = (cpu_seconds(pids) - cpu) * 1000 / max(result["requests"], 1)
            finally:
                script.unlink()
            used = result.pop("pool_used")
            pool.take(min(used, left))
            rate = max(result["rps"], 1)
            if used <= left:
                break
            result["ran_out"] = True
            rate *= 2  # the run was held back by requests that failed
            if attempt == 1:
                log(f"  {row.label} on {target.name}: pool used up ({left:.0f}), again on a larger one")
        if measured and (best is None or result["rps"] > best["rps"]):
            best = result
    if best["requests"] < 5:
        # Too slow for wrk's fixed duration: one request at a time, within a time budget.
        pool.ensure(20)
        settle(pids)
        cpu, samples, started = cpu_seconds(pids), [], time.monotonic()
        while not samples or (time.monotonic() - started < max(3 * args.duration, 1) and len(samples) < 20):
            method, path, body, bearer = pool.batch(1)[0]
            pool.take(1)
            status, raw, seconds = request(
                target.base, method, path.removeprefix("/api"), bearer.split()[1], body.encode()
            )
            if status >= 300:
                return {"mode": "error", "status": status, "body": raw[:200].decode(errors="replace")}
            samples.append(seconds)
        best = sequential_result(samples, time.monotonic() - started)
        best["cpu_ms"] = (cpu_seconds(pids) - cpu) * 1000 / len(samples)
    return best


def measure(target: Target, row: Row, args) -> dict:
    if row.pool == SOCKET:
        pids = server_pids(target)
        url = target.base.removesuffix("/api")
        connections = row.connections or args.connections
        processes = target.workers if target.command else 1
        return socket_status_changes(
            url, target.writes.socket, connections, args.duration, lambda: cpu_seconds(pids), processes
        )
    if row.pool:
        try:
            return measure_pool(target, row, args)
        except (OSError, http.client.HTTPException) as exc:  # e.g. the server dropped a connection
            return {"mode": "error", "status": type(exc).__name__}
    token = target.tokens.get(row.auth) if row.auth else None
    if row.auth and token is None:
        return {"mode": "error", "status": f"no {row.auth} token"}
    path, bodies = resolve(row, target)
    started = time.perf_counter()
    try:
        status, raw, seconds = request(target.base, row.method, path, token, bodies[0] if bodies else None)
    except (OSError, http.client.HTTPException) as exc:
        elapsed = time.perf_counter() - started
        if elapsed > 30:  # uWSGI's HTTP router gives up on a request after 60 s by default
            return {"mode": "timeout", "seconds": elapsed}
        return {"mode": "error", "status": type(exc).__name__}
    if status in (404, 405, 501):
        return {"mode": "missing", "status": status}
    if status >= 300:
        return {"mode": "error", "status": status, "body": raw[:200].decode(errors="replace")}
    pids = server_pids(target)
    best = None
    if seconds <= SLOW_SECONDS:
        auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
        lua = LUA.format(
            method=_lua_str(row.method), body=_lua_str(bodies[0].decode() if bodies else None), auth=auth
        )
        if len(bodies) > 1:
            lua += ROTATE_LUA.format(bodies="{" + ", ".join(_lua_str(b.decode()) for b in bodies) + "}")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
            fh.write(lua)
        script = Path(fh.name)
        try:
            url = target.base + path
            run_wrk(url, script, 1, args.connections)  # warm-up
            for _ in range(args.rounds):
                result = spread_wrk(target, pids, url, script, args.duration, args.connections)
                if best is None or result["rps"] > best["rps"]:
                    best = result
        finally:
            script.unlink()
    if best is None or best["requests"] < 5:
        # Too slow for wrk's fixed duration: one request at a time, within a time budget.
        settle(pids)
        cpu = cpu_seconds(pids)
        best = run_sequential(target, row, path, bodies, token, budget=max(3 * args.duration, 1))
        if "requests" in best:
            best["cpu_ms"] = (cpu_seconds(pids) - cpu) * 1000 / best["requests"]
    return best


# --- report -----------------------------------------------------------------------------------------


def _cell(result: dict | None) -> str:
    if result is None:
        return "-"
    if result["mode"] == "missing":
        return f"missing ({result['status']})"
    if result["mode"] == "error":
        return f"error ({result['status']})"
    if result["mode"] == "timeout":
        return f"closed after {result['seconds']:.0f} s"
    flag = " seq" if result["mode"] == "seq" else ""
    bad = f" !{result['non2xx']} non-2xx" if result.get("non2xx") else ""
    bad += " ran out" if result.get("ran_out") else ""
    rps = result["rps"]
    return (f"{rps:.0f}" if rps >= 10 else f"{rps:.2f}") + flag + bad


def _ratio(result: dict | None, reference: dict | None, key: str = "rps", inverse: bool = False) -> str:
    if not result or not reference or not result.get(key) or not reference.get(key):
        return "-"
    value = reference[key] / result[key] if inverse else result[key] / reference[key]
    return f"{value:.1f}x"


def _lat(result: dict | None) -> str:
    if not result or "p50" not in result:
        return "-"
    return f"{result['p50']:.1f} / {result['p99']:.1f}"


def _cpu(result: dict | None) -> str:
    if not result or not result.get("cpu_ms"):
        return _cell(result) if result and result["mode"] in ("missing", "error", "timeout") else "-"
    return f"{result['cpu_ms']:.2f}"


def _table(title: str, header: list[str], body: list[list[str]]) -> list[str]:
    lines = [title, "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return [*lines, ""]


def render(targets: list[Target], results: dict, meta: dict) -> str:
    names = [t.name for t in targets]
    ours = [n for n in names if n != "original"]
    rows = [row for row in ROWS if row.label in results]
    lines = [
        f"Run {meta['when']} on {meta['database']}: wrk -t1 -c{meta['connections']} -d{meta['duration']}s "
        f"per cell (best of {meta['rounds']}); load average {meta['load']} at start, at most "
        f"{meta['load_max']:.2f} in a cell ({meta['cpus']} CPUs).",
        "",
    ]
    lines += _table(
        "Requests per second, wall clock (x = ratio to the original):",
        ["endpoint", *names, *(f"x {n}" for n in ours)],
        [
            [
                row.label,
                *(_cell(results[row.label].get(n)) for n in names),
                *(_ratio(results[row.label].get(n), results[row.label].get("original")) for n in ours),
            ]
            for row in rows
        ],
    )
    lines += _table(
        "Server CPU time per request in ms, all processes of the server "
        "(x = CPU cost of the original / ours: requests per second per core, load-independent):",
        ["endpoint", *names, *(f"x {n}" for n in ours)],
        [
            [
                row.label,
                *(_cpu(results[row.label].get(n)) for n in names),
                *(
                    _ratio(results[row.label].get(n), results[row.label].get("original"), "cpu_ms", True)
                    for n in ours
                ),
            ]
            for row in rows
        ],
    )
    lines += _table(
        "Latency p50 / p99 in ms:",
        ["endpoint", *names],
        [[row.label, *(_lat(results[row.label].get(n)) for n in names)] for row in rows],
    )
    lines += ["Targets:", ""] + [f"- `{t.name}`: {t.note}" for t in targets]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------------


# ``--preset evidence``: issue 14's verdict in one command, ~30 min on this machine (bench/README.md).
PRESETS = {
    "evidence": {
        "targets": "original,daphne,daphne-2",
        "databases": "sqlite,postgresql",
        "duration": 3,
        "skip_300": True,
    },
}


def run_database(db: Database, targets: list[Target], rows: list[Row], args, stamp: str) -> Path:
    """Every row on every target on one database; the JSON file of the run."""
    global DB
    DB = db
    original = next((t for t in targets if t.command is None), None)
    ours = [t for t in targets if t.command is not None]
    fresh = not args.reuse
    started = time.monotonic()
    log(f"--- {db.name} ---")
    jobs = []
    results: dict[str, dict] = {}
    try:
        if original:
            if fresh or not (ORIG_STATE / db.manifest).exists():
                if db.original:
                    reset_postgres(db.original)
                subprocess.run([str(BENCH / "setup_original.sh"), "restart"], check=True, env=original_env())
                jobs.append((original, "root", True))
            else:
                subprocess.run(
                    [str(BENCH / "setup_original.sh"), "start"],
                    check=True,
                    env={**original_env(), "ORIG_KEEP_DB": "1"},
                )
                jobs.append((original, "root", False))
        if ours:
            ours_fresh = fresh or not (OURS_DIR / db.manifest).exists()
            if ours_fresh and db.ours:
                reset_postgres(db.ours)
            elif ours_fresh:  # the SQLite data stays beside a PostgreSQL run, for breakdown.py
                shutil.rmtree(OURS_DIR / "data", ignore_errors=True)
            (OURS_DIR / "data").mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [str(VENV_PY), "manage.py", "bootstrap"],
                cwd=ROOT,
                env=ours_env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            for t in ours:
                log(f"starting {t.name} on port {t.port} ...")
                start_ours(t)
            jobs.append((ours[0], OURS_ROOT_PASSWORD, ours_fresh))
        seed(jobs)
        for t in ours[1:]:
            t.manifest = ours[0].manifest
        for t in targets:
            login(t)
            if not fresh:
                check_reused(t)
            warm(t, [r for r in rows if r.phase == "main"])

        meta = {
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "run": stamp,
            "database": db.name,
            "targets": [t.name for t in targets],
            "duration": args.duration,
            "connections": args.connections,
            "rounds": args.rounds,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "cpus": os.cpu_count(),
        }
        for phase in ("main", "writes", "nodes300"):
            phase_rows = [r for r in rows if r.phase == phase]
            if not phase_rows:
                continue
            if phase == "writes":
                for t in targets:
                    pool = args.pool_original if t.command is None else args.pool
                    t.writes = prepare(t.base, t.manifest, pool, log)
            if phase == "nodes300":
                seed(jobs, extend=300)
                for t in ours[1:]:
                    t.manifest = ours[0].manifest
            for row in phase_rows:
                results[row.label] = {}
                for t in targets:
                    load, cell_started = os.getloadavg()[0], time.monotonic()
                    result = measure(t, row, args)
                    result[LOAD] = [load, os.getloadavg()[0]]
                    result["seconds"] = round(time.monotonic() - cell_started, 1)
                    results[row.label][t.name] = result
                    log(f"{row.label:40s} {t.name:16s} {_cell(result):>16s}  p50/p99 {_lat(result)}")
    finally:
        for t in ours:
            stop_ours(t)
        if original and not args.keep_running:
            subprocess.run([str(BENCH / "setup_original.sh"), "stop"], check=False, env=original_env())

    meta["seconds"] = round(time.monotonic() - started)
    meta["load_max"] = max((max(r[LOAD]) for cells in results.values() for r in cells.values()), default=0)
    table = render(targets, results, meta)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("latest.md" if db.name == "sqlite" else f"latest-{db.name}.md")).write_text(table)
    out = RESULTS / f"api-{stamp}-{db.name}.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="REST benchmark against vantage6-server 4.15.2")
    default_targets = "original,daphne,uvicorn,gunicorn-wsgi,uvicorn-2,gunicorn-wsgi-2"
    if os.environ.get("BENCH_RABBITMQ_URI"):
        default_targets = default_targets.replace("daphne,", "daphne,daphne-2,")
    both = os.environ.get("ORIG_DB_URI", "").startswith("postgres") and os.environ.get("V6_DATABASE_URL")
    parser.add_argument("--preset", choices=PRESETS, help="evidence: " + str(PRESETS["evidence"]))
    parser.add_argument("--targets", default=default_targets)
    parser.add_argument(
        "--databases",
        default="postgresql" if both else "sqlite",
        help="sqlite,postgresql (postgresql: ORIG_DB_URI and V6_DATABASE_URL, reset at the start)",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per cell (default 5)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="repeat each cell, keep the best")
    parser.add_argument("--only", help="only rows whose label contains this text (several: a|b)")
    parser.add_argument("--skip", help="no rows whose label contains this text (e.g. bcrypt)")
    parser.add_argument(
        "--pool", type=int, default=200, help="fresh items per consuming write row at first (default 200)"
    )
    parser.add_argument(
        "--pool-original", type=int, default=50, help="the same for the original (default 50)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the data (and running original) of the last run"
    )
    parser.add_argument("--skip-300", action="store_true", help="skip growing to 300 nodes")
    parser.add_argument("--keep-running", action="store_true", help="leave the original running at the end")
    preset = parser.parse_known_args()[0].preset
    if preset:
        parser.set_defaults(**PRESETS[preset])  # options given on the command line still win
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = set(names) - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    targets = [TARGETS[n] for n in names]
    for t in targets:
        ours_env(t)  # a missing broker stops the run before anything starts
    if any(t.needs_deps for t in targets):
        ensure_deps()
    rows = [
        r
        for r in ROWS
        if (not args.only or any(text in r.label for text in args.only.split("|")))
        and not (args.skip and args.skip in r.label)
    ]
    if args.skip_300:
        rows = [r for r in rows if r.phase != "nodes300"]

    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    files, failures = [], []
    with claim(OURS_DIR):  # the original's data of this offset too (ORIG_STATE)
        for db in databases(args.databases):
            try:
                files.append(run_database(db, targets, rows, args, stamp))
            except SystemExit as exc:  # a server that did not start, seeding that failed: the next database
                failures.append(f"{db.name}: {exc}")
                log(f"{db.name} failed: {exc}")
    log(f"done in {(time.monotonic() - started) / 60:.1f} min: {', '.join(str(f) for f in files)}")
    results = [summary.load(f) for f in files]
    if results:
        print(summary.render(results))
    failures += summary.gaps(results, [t.name for t in targets], [r.label for r in rows])
    if failures:
        raise SystemExit("INCOMPLETE RUN, no verdict:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
