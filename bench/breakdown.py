"""Where the milliseconds of one request go, measured inside one process (no HTTP server, no network).

Runs on the dataset of the last ``api.py`` run (``bench/.ours``). For each path it reports the CPU
time per request through Django's WSGI handler and through the ASGI application (what daphne and
uvicorn call), the SQL queries of one request, and the cost of pieces measured on their own
(middleware chain, JWT decoding, loading the principal, the ASGI handler, JSON rendering).
``--cprofile`` adds the functions and packages that take the time (cProfile, WSGI path).
``--writes`` measures the writes instead (run updates by a node, task creation, ports, kills; fresh
rows are made for the writes that consume them): CPU per request (also without publishing its event),
SQL statements and their time with the audit insert apart, event publishing, JSON parsing and rendering,
the sizes of body and answer; on PostgreSQL the round trips, and how a run's result is stored.

    .venv/bin/python bench/breakdown.py                       # the default paths
    .venv/bin/python bench/breakdown.py /api/task /api/run?include=task --cprofile
    .venv/bin/python bench/breakdown.py /api/task /api/run --as researcher   # or --as node
    .venv/bin/python bench/breakdown.py --writes -n 100
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(BENCH))

from api import OURS_DIR, OURS_ENV, Database  # noqa: E402 - the benchmark's own settings

DEFAULT_PATHS = [
    "/api/version",
    "/api/organization",
    "/api/organization/{org_id}",
    "/api/user",
    "/api/node",
    "/api/task",
    "/api/run",
    "/api/run?include=task",
]


def setup() -> dict:
    os.environ.update(OURS_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
    import django

    django.setup()
    database = Database("postgresql" if os.environ.get("V6_DATABASE_URL") else "sqlite")
    return json.loads((OURS_DIR / database.manifest).read_text())


def root_token(manifest: dict) -> str:
    return token_as(manifest, "root")


def token_as(manifest: dict, who: str) -> str:
    """An access token of root, of the seeded researcher of ``api.py``'s researcher rows, or of the
    node of its ``GET /api/node (as a node)`` row."""
    from accounts.models import User
    from accounts.sessions import start_login
    from nodes.models import Node

    if who == "node":
        return start_login(Node.objects.get(pk=manifest["nodes"][0]["id"]), "node")[0]
    if who == "researcher":
        user_id = next(u["id"] for u in manifest["users"] if u["role"] == "Researcher")
    else:
        user_id = manifest["root"]["id"]
    return start_login(User.objects.get(pk=user_id), "user")[0]


def environ(path: str, token: str | None, method: str = "GET", body: bytes = b"") -> dict:
    route, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "7611",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:7611",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if token:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return env


def call_wsgi(
    handler, path: str, token: str | None, method: str = "GET", body: bytes = b""
) -> tuple[str, bytes]:
    statuses = []
    env = environ(path, token, method, body)
    answer = b"".join(handler(env, lambda status, *_: statuses.append(status)))
    return statuses[0], answer


def cpu_per_call(fn, n: int, batches: int = 5) -> float:
    """CPU milliseconds per call of ``fn`` (all threads of this process), after a warm-up.

    The best of a few batches: other load on the machine only ever adds time.
    """
    for _ in range(min(20, n)):
        fn()
    size = max(1, n // batches)
    best = float("inf")
    for _ in range(batches):
        started = time.process_time()
        for _ in range(size):
            fn()
        best = min(best, (time.process_time() - started) * 1000 / size)
    return best


def asgi_runner(path: str, token: str | None, application=None):
    """One GET through the ASGI application, as daphne or uvicorn would call it."""
    return asgi_requests(lambda: (path, token, "GET", b""), application)


def asgi_requests(request, application=None):
    """A function making one request through the ASGI application, as daphne or uvicorn would call it;
    ``request()`` gives its (path, token, method, body). The application's sync work runs in its
    thread pool with this loop as the main loop, as under daphne (event publishing included)."""
    if application is None:
        from vantage6.asgi import application

    answer: dict = {}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    async def one_request():
        path, token, method, body = request()
        route, _, query = path.partition("?")
        headers = [(b"host", b"127.0.0.1:7611"), (b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 7611),
        }
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect: Django cancels this when it is done

        answer.clear()
        await application(scope, receive, send)
        await asyncio.sleep(0)  # what the request handed to the loop (event publishing) runs too
        return answer.get("status"), answer.get("body", b"")

    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(one_request())


def sql_of(handler, path: str, token: str | None) -> list[tuple[float, str]]:
    from django.db import connection

    queries: list[tuple[float, str]] = []

    def wrapper(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append(((time.perf_counter() - started) * 1000, sql))

    call_wsgi(handler, path, token)  # warm caches first
    with connection.execute_wrapper(wrapper):
        call_wsgi(handler, path, token)
    return queries


def pieces(token: str, path: str, n: int) -> dict[str, float]:
    """CPU ms of parts of the request measured on their own (differences of noisy figures: rough)."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings
    from rest_framework.renderers import JSONRenderer

    from accounts.authentication import principal_from_claims
    from accounts.tokens import decode
    from vantage6.asgi import django_http

    out = {"jwt decode": cpu_per_call(lambda: decode(token), n)}
    claims = decode(token)
    out["load principal (one query)"] = cpu_per_call(lambda: principal_from_claims(claims), n)
    handler = WSGIHandler()
    full = cpu_per_call(lambda: call_wsgi(handler, path, token), n)
    with override_settings(MIDDLEWARE=[]):
        bare = WSGIHandler()
        out["middleware chain"] = full - cpu_per_call(lambda: call_wsgi(bare, path, token), n)
    pooled = cpu_per_call(asgi_runner(path, token, django_http), n)
    out["ASGI handler (vantage6.handler) over WSGI"] = pooled - full
    out["ASGI routing over the handler"] = cpu_per_call(asgi_runner(path, token), n) - pooled
    body = json.loads(call_wsgi(handler, path, token)[1])
    out["JSON rendering of the body"] = cpu_per_call(lambda: JSONRenderer().render(body), n)
    return out


PACKAGES = (
    ("rest_framework/", "DRF"),
    ("django/db/", "Django ORM"),
    ("django/", "Django (other)"),
    ("asgiref/", "asgiref"),
    ("jwt/", "PyJWT"),
    ("sqlite3", "sqlite3 (C)"),
    ("json/", "json"),
    ("accounts/", "project: accounts"),
    ("collaborations/", "project: collaborations"),
    ("nodes/", "project: nodes"),
    ("tasks/", "project: tasks"),
    ("vantage6/", "project: vantage6"),
)


def package_of(filename: str, name: str) -> str:
    for needle, label in PACKAGES:
        if needle in filename or needle in name:
            return label
    if filename == "~":
        return "builtins (C)"
    return "other Python"


def cprofile(one, n: int, top: int, sort: str = "cumulative") -> str:
    """Where the time of ``n`` calls of ``one`` (a request) goes; the functions listed by ``sort``."""
    profiler = cProfile.Profile()
    for _ in range(20):
        one()
    profiler.enable()
    for _ in range(n):
        one()
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_package: Counter[str] = Counter()
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        by_package[package_of(filename, name)] += tottime
    total = sum(by_package.values())
    lines = [f"  self time by package (cProfile, {n} requests; {total * 1000 / n:.2f} ms/request profiled):"]
    lines += [f"    {label:28s} {100 * t / total:5.1f}%" for label, t in by_package.most_common()]
    stream = io.StringIO()
    stats.stream = stream
    stats.sort_stats(sort).print_stats(top)
    lines += [f"  by {sort} time:", stream.getvalue()]
    return "\n".join(lines)


# --- writes ---------------------------------------------------------------------------------------------
RESULT = "r" * 10240


def write_cases(manifest: dict, n: int) -> dict:
    """Per write: a function giving the next (method, path, body, token); consuming writes get fresh
    rows, made here through the ORM."""
    from accounts.sessions import start_login
    from accounts.tokens import container_token
    from nodes.models import Node
    from tasks.models import Run, Task

    collab = manifest["collaborations"][0]
    orgs = manifest["organizations"][:5]
    node = Node.objects.get(organization_id=orgs[0], collaboration_id=collab)
    node_token = start_login(node, "node")[0]
    root = root_token(manifest)
    runs = list(
        Run.objects.filter(organization_id=orgs[0], task__collaboration_id=collab).values_list(
            "id", flat=True
        )[:20]
    )

    def pending_tasks(name: str, count: int, runs_each: int) -> list[Task]:
        tasks = [
            Task.objects.create(
                name=name, image="i", collaboration_id=collab, init_org_id=orgs[0], job_id=0, status="pending"
            )
            for _ in range(count)
        ]
        Run.objects.bulk_create(
            Run(task=task, organization_id=orgs[0], input="") for task in tasks for _ in range(runs_each)
        )
        return tasks

    def fresh_runs(count: int):
        # In tasks of 5 runs, as those of api.py: a run update reads the runs of its task.
        tasks = pending_tasks("breakdown", count // 5 + 1, 5)
        return iter(list(Run.objects.filter(task__in=tasks).order_by("id").values_list("id", flat=True)))

    def fresh_tasks(count: int):
        return iter([task.pk for task in pending_tasks("kill", count, 1)])

    task_body = json.dumps(
        {
            "name": "t",
            "image": "i",
            "collaboration_id": collab,
            "organizations": [{"id": org, "input": "eyJhIjogMX0="} for org in orgs],
            "databases": [{"label": "default"}],
        }
    ).encode()
    completion = json.dumps({"status": "completed", "result": RESULT, "log": "ok"}).encode()
    pools: dict = {}
    needed = 5 * n + 100  # warm-ups, measuring (WSGI with and without events, ASGI), counting, profiling
    complete, kill = fresh_runs(needed), fresh_tasks(needed)
    # A container of the first node, running a run of a task to the 5 organizations (its subtasks).
    parent = Task.objects.get(pk=next(fresh_tasks(1)))
    Run.objects.bulk_create(Run(task=parent, organization_id=org, input="") for org in orgs[1:])
    container = container_token(
        {
            "client_type": "container",
            "node_id": node.pk,
            "node_generation": node.token_generation,
            "organization_id": orgs[0],
            "collaboration_id": collab,
            "study_id": None,
            "store_id": None,
            "task_id": parent.pk,
            "image": parent.image,
            "databases": [],
        }
    )
    subtask_body = json.dumps(
        {
            "name": "sub",
            "image": parent.image,
            "collaboration_id": collab,
            "organizations": [{"id": orgs[0], "input": "eyJhIjogMX0="}],
            "databases": [{"label": "default"}],
        }
    ).encode()

    def nth(items: list, key: str):
        pools[key] = pools.get(key, -1) + 1
        return items[pools[key] % len(items)]

    return {
        "PATCH /api/run/<id> (status)": lambda: (
            "PATCH", f"/api/run/{nth(runs, 'status')}", b'{"status": "active"}', node_token
        ),
        "PATCH /api/run/<id> (10 KiB result)": lambda: (
            "PATCH", f"/api/run/{next(complete)}", completion, node_token
        ),
        "POST /api/task (5 organizations)": lambda: ("POST", "/api/task", task_body, root),
        "POST /api/task (container subtask)": lambda: ("POST", "/api/task", subtask_body, container),
        "POST /api/port": lambda: (
            "POST", "/api/port", json.dumps({"port": 8080, "run_id": nth(runs, "port")}).encode(), node_token
        ),
        "POST /api/kill/task": lambda: (
            "POST",
            "/api/kill/task",
            json.dumps({"id": next(kill)}).encode(),
            root,
        ),
    }  # fmt: skip


def write_breakdown(label: str, case, n: int, top: int | None, sort: str = "cumulative") -> None:
    """CPU per request of one write, its SQL (the audit insert apart), event publishing and rendering."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from rest_framework.renderers import JSONRenderer

    from nodes.consumers import server
    from vantage6.api.parsers import JSONParser

    handler = WSGIHandler()
    timings: Counter[str] = Counter()

    def timed(key: str, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[key] += time.perf_counter() - started

        return wrapper

    statements: list[str] = []  # those of the last request

    def sql(execute, statement, params, many, context):
        started = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            key = "SQL: audit insert" if statement.startswith('INSERT INTO "audit_entry"') else "SQL: other"
            timings[key] += time.perf_counter() - started
            timings["statements"] += 1
            statements.append(statement)

    sizes = [0, 0]  # of the last request's body and answer

    def one() -> None:
        request = _request(case())
        status, body = call_wsgi(handler, *request)
        if status[0] != "2":
            raise SystemExit(f"{label}: {status} {body[:200]!r}")
        sizes[:] = [len(request[3]), len(body)]

    cpu_ms = cpu_per_call(one, n)
    # Without a server's loop an event is published through a loop made for it (the in-memory layer):
    # a cost of this measurement, not of the server's, which posts the event to its own loop.
    publish = server.publish
    server.publish = lambda *_args, **_kwargs: None
    try:
        quiet_ms = cpu_per_call(one, n)
    finally:
        server.publish = publish
    through_asgi = asgi_requests(lambda: _request(case()))

    def one_asgi() -> None:
        status, body = through_asgi()
        if status is None or not 200 <= status < 300:
            raise SystemExit(f"{label}: {status} {body[:200]!r}")

    asgi_ms = cpu_per_call(one_asgi, n)
    render, parse = JSONRenderer.render, JSONParser.parse
    server.publish = timed("event publishing", publish)
    JSONRenderer.render = timed("JSON rendering", render)
    JSONParser.parse = timed("JSON parsing", parse)
    trips = RoundTrips(connection) if connection.vendor == "postgresql" else None
    try:
        with connection.execute_wrapper(sql):
            started = time.perf_counter()
            for _ in range(n):
                statements.clear()
                if trips:
                    trips.clear()
                one()
            wall = time.perf_counter() - started
    finally:
        server.publish, JSONRenderer.render, JSONParser.parse = publish, render, parse
        if trips:
            trips.stop()
    print(f"{label}\n  CPU per request: WSGI handler {cpu_ms:.2f} ms, ASGI application {asgi_ms:.2f} ms")
    print(f"  CPU per request, its event not published (WSGI handler): {quiet_ms:.2f} ms")
    print(f"  bytes per request: body {sizes[0]}, answer {sizes[1]}")
    print(f"  wall per request (WSGI handler): {wall * 1000 / n:.2f} ms")
    print(f"  SQL statements per request: {timings.pop('statements') / n:.1f}")
    for key, seconds in sorted(timings.items()):
        print(f"  {key:28s} {seconds * 1000 / n:6.2f} ms wall per request")
    if trips:
        trips.report(n)
        if "result)" in label:
            _stored_result(connection)
    else:
        print("  SQL of one request (each statement a round trip):")
        for statement in statements:
            print(f"    {statement[:140]}")
    if top:
        print(cprofile(one, n, top, sort))
    print()


class RoundTrips:
    """The query strings sent to PostgreSQL (one a round trip: BEGIN, COMMIT and the connection check
    included, which Django's query log does not show) with their wall time, recorded at psycopg2's
    cursor; ``report`` adds each statement's planning and execution time on the server (``EXPLAIN
    ANALYZE`` of the last request's statements, in a transaction rolled back)."""

    def __init__(self, connection) -> None:
        connection.ensure_connection()
        self.connection = connection
        self.sent: list[tuple[str, float]] = []
        self.total = 0.0
        self.count = 0
        recorder = self

        class Recording(connection.connection.cursor_factory):
            def send(self, query, vars):
                started = time.perf_counter()
                try:
                    return super().send(query, vars)
                finally:
                    ms = (time.perf_counter() - started) * 1000
                    recorder.sent.append((self.mogrify(query, vars).decode(), ms))
                    recorder.total += ms
                    recorder.count += 1

        self.original = connection.connection.cursor_factory
        connection.connection.cursor_factory = Recording
        self.backend = connection.connection.get_backend_pid()
        self.cpu_at_start = _process_cpu_ms(self.backend)

    def clear(self) -> None:
        self.sent.clear()

    def stop(self) -> None:
        self.connection.connection.cursor_factory = self.original
        self.server_cpu = _process_cpu_ms(self.backend) - self.cpu_at_start

    def report(self, n: int) -> None:
        import sqlparse

        print(f"  round trips per request: {self.count / n:.1f}, {self.total / n:.2f} ms wall")
        print(f"  PostgreSQL's CPU per request (its backend process): {self.server_cpu / n:.2f} ms")
        print("  round trips of one request (wall ms; per statement the server's planning + execution ms):")
        with self.connection.connection.cursor() as cursor:
            for query, ms in self.sent:
                print(f"    {ms:6.2f} ms  {_short(query)}")
                cursor.send("BEGIN", None)
                try:
                    for statement in sqlparse.split(query):
                        if statement.rstrip(";").upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
                            continue
                        cursor.send(f"EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) {statement}", None)
                        (plan,) = cursor.fetchone()[0]
                        print(
                            f"      {plan['Planning Time']:6.3f} + {plan['Execution Time']:6.3f} ms  "
                            f"{_short(statement, 100)}"
                        )
                finally:
                    cursor.send("ROLLBACK", None)


def _stored_result(connection) -> None:
    """How PostgreSQL stores the last run result written: the column's storage (``x`` extended: pglz
    compresses a value over ~2 KB before moving it out of the row, ``e`` external: out of the row
    as it is) and the value's size as stored against its length."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'run'::regclass AND attname = 'result'"
        )
        (storage,) = cursor.fetchone()
        cursor.execute(
            "SELECT pg_column_size(result), octet_length(result) FROM run"
            " WHERE result IS NOT NULL ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1"
        )
        stored, length = cursor.fetchone()
    print(f"  the result as stored: storage '{storage}', {stored} bytes for {length}")


def _process_cpu_ms(pid: int) -> float:
    """The CPU time a process of this machine has used (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _short(sql: str, width: int = 140) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= width else sql[: width - 3] + "..."


def _request(parts: tuple) -> tuple:
    method, path, body, token = parts
    return path, token, method, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--writes", action="store_true", help="the write endpoints instead of paths")
    parser.add_argument("-n", type=int, default=200, help="requests per measurement")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--sort", choices=("cumulative", "tottime"), default="cumulative", help="--cprofile's order"
    )
    parser.add_argument("--only", help="with --writes: only writes whose label contains this text (a|b)")
    parser.add_argument(
        "--as", dest="who", choices=("root", "researcher", "node"), default="root", help="who asks (paths)"
    )
    args = parser.parse_args()

    manifest = setup()
    from django.core.handlers.wsgi import WSGIHandler

    if args.writes:
        for label, case in write_cases(manifest, args.n).items():
            if args.only and not any(text in label for text in args.only.split("|")):
                continue
            write_breakdown(label, case, args.n, args.top if args.cprofile else None, args.sort)
        return
    token = token_as(manifest, args.who)
    values = {"org_id": manifest["organizations"][0], "task_id": manifest["tasks"][0]}
    handler = WSGIHandler()
    for template in args.paths or DEFAULT_PATHS:
        path = template.format(**values)
        auth = None if path.endswith("/version") else token
        status, body = call_wsgi(handler, path, auth)
        if not status.startswith("200"):
            print(f"{path}: {status}")
            continue
        wsgi_ms = cpu_per_call(lambda: call_wsgi(handler, path, auth), args.n)  # noqa: B023
        asgi_ms = cpu_per_call(asgi_runner(path, auth), args.n)
        queries = sql_of(handler, path, auth)
        print(f"{path}  ({len(body)} bytes)")
        print(f"  CPU per request: WSGI handler {wsgi_ms:.2f} ms, ASGI application {asgi_ms:.2f} ms")
        print(f"  SQL: {len(queries)} queries, {sum(q[0] for q in queries):.2f} ms wall")
        for ms, sql in queries:
            print(f"    {ms:6.2f} ms  {sql[:150]}")
        if auth:
            for label, ms in pieces(auth, path, args.n).items():
                print(f"  {label:40s} {ms:6.2f} ms")
        if args.cprofile:
            print(cprofile(lambda: call_wsgi(handler, path, auth), args.n, args.top, args.sort))  # noqa: B023
        print()


if __name__ == "__main__":
    main()
