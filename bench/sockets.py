"""Socket benchmark: many nodes on two server instances sharing RabbitMQ, one collaboration.

    eval "$(scripts/services-start.sh)"        # RabbitMQ (required) and PostgreSQL (recommended)
    .venv/bin/python bench/sockets.py            # 1,000 nodes
    .venv/bin/python bench/sockets.py --nodes 200

What it does, all on 127.0.0.1 and bounded in time (``--timeout``):
1. creates a fresh database (on the PostgreSQL server of ``V6_DATABASE_URL``, else an SQLite file)
   with one collaboration of ``--nodes`` organizations, each with a node;
2. starts two daphne instances on it and on ``V6_RABBITMQ_URI`` and notes their memory (RSS);
3. connects every node over a raw websocket speaking Engine.IO/Socket.IO as the official node does
   after its upgrade (half on each instance) and waits until each has joined its rooms; notes the RSS
   again once the connections are idle;
4. sends ``new_task`` to the collaboration, once from plain synchronous code (``nodes.events.emit``)
   and once through ``POST /api/task`` for all organizations of the collaboration, and measures when
   each node receives it;
5. opens ``--idle`` more websockets (clients without a token) on the first instance, holds them for
   ``--hold`` seconds answering pings, and counts the ones that failed or dropped;
6. prints a table with the target of each figure, stops the servers and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import django
import httpx
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request, TextMessage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50, help="connections opened at once")
    parser.add_argument("--timeout", type=float, default=1500, help="give up after this many seconds")
    parser.add_argument("--idle", type=int, default=10000, help="idle sockets on one instance (0: skip)")
    parser.add_argument("--hold", type=float, default=20, help="seconds the idle sockets are held")
    return parser.parse_args()


class WebSocket:
    """A minimal websocket client on asyncio streams (text messages only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox: list[str] = []
        self.parts: list[str] = []

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> WebSocket:
        """``url``: http://host:port/path?query."""
        host_port, _, target = url.removeprefix("http://").partition("/")
        host, _, port = host_port.partition(":")
        socket = cls(*await asyncio.open_connection(host, int(port)))
        extra = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        socket._write(Request(host=host_port, target=f"/{target}", extra_headers=extra))
        while not await socket._read_until(AcceptConnection):
            pass
        return socket

    def _write(self, event: object) -> None:
        self.writer.write(self.ws.send(event))

    async def _read_until(self, kind: type) -> bool:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.ws.receive_data(data)
        found = False
        for event in self.ws.events():
            if isinstance(event, kind):
                found = True
            if isinstance(event, TextMessage):
                self.parts.append(event.data)
                if event.message_finished:
                    self.inbox.append("".join(self.parts))
                    self.parts = []
            elif isinstance(event, Ping):
                self._write(event.response())
            elif isinstance(event, CloseConnection):
                raise ConnectionError("closed by the server")
        return found

    async def receive(self) -> str:
        while not self.inbox:
            await self._read_until(Message)
        return self.inbox.pop(0)

    async def send(self, text: str) -> None:
        self._write(TextMessage(data=text))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Node:
    """One node's socket: answers PINGs, and notes when it is ready and when events arrive."""

    def __init__(self, name: str, token: str, ready_suffix: str) -> None:
        self.name = name
        self.token = token
        self.ready_suffix = ready_suffix
        self.ready = asyncio.Event()
        self.received: dict[int, float] = {}  # task id -> monotonic time
        self.arrived = asyncio.Event()

    async def run(self, url: str) -> None:
        path = "/socket.io/?EIO=4&transport=websocket"
        ws = await WebSocket.connect(f"{url}{path}", {"Authorization": f"Bearer {self.token}"})
        try:
            await ws.receive()  # OPEN
            await ws.send("40/tasks,{}")
            while True:
                data = await ws.receive()
                if data == "2":
                    await ws.send("3")
                elif data.startswith('42/tasks,["new_task"'):
                    task_id = json.loads(data[len("42/tasks,") :])[1]["id"]
                    self.received[task_id] = time.monotonic()
                    self.arrived.set()
                elif data.endswith(self.ready_suffix):
                    self.ready.set()
        finally:
            await ws.close()


def seed(count: int):
    from accounts.models import Role, User
    from collaborations.models import Collaboration, Organization
    from nodes.models import Node as NodeRow
    from tests.realtime.helpers import token
    from tests.realtime.live import LIVE

    tag = uuid.uuid4().hex[:6]
    orgs = Organization.objects.using(LIVE).bulk_create(
        Organization(name=f"bench-{tag}-{number}") for number in range(count)
    )
    collab = Collaboration(name=f"bench-{tag}", encrypted=False)
    collab.save(using=LIVE)
    collab.organizations.add(*orgs)
    nodes = []
    for org in orgs:
        row = NodeRow(name=f"node-{org.name}", organization=org, collaboration=collab, status="offline")
        row.set_api_key(str(uuid.uuid4()))
        row.save(using=LIVE)
        room = f"collaboration_{collab.pk}_organization_{org.pk}"
        nodes.append(Node(row.name, token(row), f'joined room {room}"]'))
    user = User(username=f"bench-{tag}", email=f"{tag}@example.org", organization=orgs[0])
    user.set_password(uuid.uuid4().hex)
    user.save(using=LIVE)
    user.roles.add(*Role.objects.using(LIVE).filter(name="Researcher", is_default_role=True))
    return collab, orgs, nodes, token(user)


def timings(stats: dict[str, float]) -> str:
    return " / ".join(f"{stats[key]:.0f}" for key in ("first_ms", "median_ms", "p99_ms", "last_ms")) + " ms"


def spread(nodes: list[Node], task_id: int, started: float) -> dict[str, float]:
    times = sorted(node.received[task_id] - started for node in nodes if task_id in node.received)
    return {
        "reached": len(times),
        "first_ms": times[0] * 1000,
        "median_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000 if len(times) > 1 else times[0] * 1000,
        "last_ms": times[-1] * 1000,
    }


async def wait_all(nodes: list[Node], task_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(task_id not in node.received for node in nodes) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


Row = tuple[str, str, str]  # label, figure, target


async def measure(args, servers, collab, orgs, nodes, user_token) -> list[Row]:
    from asgiref.sync import sync_to_async

    from nodes.events import collaboration_room, emit

    rows: list[Row] = []
    rss_before = sum(server.rss_kib() for server in servers)
    limit = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient(timeout=120) as http:

        async def connect(index: int, node: Node) -> None:
            async with limit:
                tasks.append(asyncio.create_task(node.run(servers[index % 2].url)))
                await node.ready.wait()

        tasks: list[asyncio.Task] = []
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(connect(i, node) for i, node in enumerate(nodes))), args.timeout * 0.7
        )
        connected = time.monotonic() - started
        rows.append(
            ("nodes connected and in their rooms", f"{len(nodes)} in {connected:.1f} s", "1,000 < 30 s")
        )
        await asyncio.sleep(5)  # let the join notices settle: idle connections from here
        rss_after = sum(server.rss_kib() for server in servers)
        rows.append(
            (
                "server RSS before / after (2 instances)",
                f"{rss_before / 1024:.0f} / {rss_after / 1024:.0f} MiB",
                "",
            )
        )
        per_node = (rss_after - rss_before) / len(nodes)
        rows.append(("memory per idle node websocket", f"{per_node:.1f} KiB", "<= 20 KiB"))

        # 1. From plain synchronous code, as a management command or a view would (after a first
        # emit elsewhere, which connects the publisher to RabbitMQ).
        await sync_to_async(emit_now)(emit, "bench_warm_up", 0)
        fake_task = 10**9
        started = time.monotonic()
        await sync_to_async(emit_now)(emit, collaboration_room(collab.pk), fake_task)
        await wait_all(nodes, fake_task, 60)
        stats = spread(nodes, fake_task, started)
        rows.append(("new_task via emit(): reached", f"{stats['reached']} / {len(nodes)}", "all"))
        rows.append(("  first / median / p99 / last", timings(stats), "last < 500 ms"))

        # 2. Through the API on the second instance: a task for every organization of the collaboration.
        plain = base64.b64encode(b'{"method": "bench"}').decode()
        body = {
            "name": "bench",
            "image": "bench/image",
            "collaboration_id": collab.pk,
            "organizations": [{"id": org.pk, "input": plain} for org in orgs],
            "databases": [{"label": "default"}],
        }
        started = time.monotonic()
        response = await http.post(
            f"{servers[1].url}/api/task", json=body, headers={"Authorization": f"Bearer {user_token}"}
        )
        answered = time.monotonic() - started
        task = response.json()
        assert response.status_code == 201, task
        await wait_all(nodes, task["id"], 60)
        stats = spread(nodes, task["id"], started)
        rows.append((f"POST /api/task ({len(orgs)} runs): response", f"{answered * 1000:.0f} ms", ""))
        rows.append(("new_task via the API: reached", f"{stats['reached']} / {len(nodes)}", "all"))
        rows.append(("  first / median / p99 / last (from the request)", timings(stats), ""))
        for task_handle in tasks:
            task_handle.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if args.idle:
            rows += await idle_sockets(servers[0], args.idle, args.hold, args.concurrency)
    return rows


async def idle_sockets(server, count: int, hold: float, concurrency: int) -> list[Row]:
    """``count`` websockets without a token on one instance, held ``hold`` seconds: how many failed."""
    failed = dropped = connected = 0
    all_open = asyncio.Event()
    limit = asyncio.Semaphore(concurrency)
    url = f"{server.url}/socket.io/?EIO=4&transport=websocket"

    async def hold_one() -> None:
        nonlocal failed, dropped, connected
        try:
            async with limit:
                ws = await WebSocket.connect(url)
                await ws.receive()  # OPEN
        except (TimeoutError, OSError, ValueError):
            failed += 1
            return
        connected += 1
        if connected + failed == count:
            all_open.set()
        try:
            while True:  # until cancelled at the end of the hold
                if await ws.receive() == "2":
                    await ws.send("3")
        except ConnectionError:
            dropped += 1
        finally:
            await ws.close()

    rss_before = server.rss_kib()
    started = time.monotonic()
    sockets = [asyncio.create_task(hold_one()) for _ in range(count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_open.wait(), 600)
    opening = time.monotonic() - started
    await asyncio.sleep(hold)
    rss_held = server.rss_kib()
    for socket in sockets:
        socket.cancel()
    await asyncio.gather(*sockets, return_exceptions=True)
    per_socket = (rss_held - rss_before) / max(connected, 1)
    return [
        (f"idle websockets on one instance, held {hold:.0f} s", f"{connected} in {opening:.1f} s", "10,000"),
        ("  failed to open / dropped by the server", f"{failed} / {dropped}", "0 / 0"),
        ("  memory per idle websocket (no identity)", f"{per_socket:.1f} KiB", "<= 20 KiB"),
    ]


def emit_now(emit, room: str, task_id: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        emit("new_task", {"id": task_id, "parent_id": None}, room=room)


def use_as_default(alias: str) -> None:
    """Point this process's default database at ``alias`` (the benchmark's own database)."""
    from django.db import connections

    connections["default"].close()
    connections.settings["default"] = connections.settings[alias]
    del connections["default"]


def main() -> None:
    args = parse_args()
    rabbitmq = os.environ.get("V6_RABBITMQ_URI")
    if not rabbitmq:
        sys.exit('needs RabbitMQ: eval "$(scripts/services-start.sh)" first (V6_RABBITMQ_URI)')
    django.setup()
    from tests.realtime.live import LIVE, Daphne, LiveDatabase

    postgres = os.environ.get("V6_DATABASE_URL", "")
    if not postgres.startswith("postgres"):
        print("no PostgreSQL in V6_DATABASE_URL: using SQLite, which serializes the writes", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="v6-bench-sockets-") as folder:
        database = LiveDatabase(
            Path(folder), postgres_url=postgres if postgres.startswith("postgres") else None
        )
        use_as_default(LIVE)
        servers = []
        try:
            collab, orgs, nodes, user_token = seed(args.nodes)
            # vantage6's own timers; the sweep must not interfere with idle connections.
            env = database.process_env(
                V6_RABBITMQ_URI=rabbitmq,
                V6_SOCKET_PING_INTERVAL="25",
                V6_SOCKET_PING_TIMEOUT="60",
                V6_NODE_HEARTBEAT_TIMEOUT="65",
                V6_MAX_CONNECTIONS_PER_CLIENT="20000",  # every client of the benchmark is on 127.0.0.1
            )
            servers = [Daphne(env, Path(folder)), Daphne(env, Path(folder))]
            for server in servers:  # import everything and build the layer before the RSS baseline
                warm_up(server.url)
            rows = asyncio.run(
                asyncio.wait_for(measure(args, servers, collab, orgs, nodes, user_token), args.timeout)
            )
        finally:
            for server in servers:
                server.stop()
            database.drop()
    width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    print(f"\nSocket benchmark: {args.nodes} nodes, 2 daphne instances, RabbitMQ channel layer")
    print(f"  {'':{width}}  {'figure':{value_width}}  target")
    for label, value, target in rows:
        print(f"  {label.ljust(width)}  {value.ljust(value_width)}  {target}")


def warm_up(url: str) -> None:
    import requests

    requests.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=30).raise_for_status()
    requests.get(f"{url}/api/version", timeout=30)


if __name__ == "__main__":
    main()
