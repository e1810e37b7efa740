"""The write rows of ``api.py``: data prepared through the API so that every request of a row succeeds.

Writes change what they touch, so a row cannot repeat one request forever. Each row gets a *pool*:
a list of requests (method, path, body, token) that ``wrk`` walks through in order. Rows whose
request can be repeated (a run set to ``active`` again, a new port, a new task) cycle through a
small pool; rows that consume what they touch (completing a run, killing a task, creating a user
with a unique name) get a pool of fresh items, and each ``wrk`` run starts where the last stopped.
Such a pool grows through the API before each ``wrk`` run (``Pool.ensure``: ``api.py`` asks for
what the measured rate of the row needs); a run that still uses it up is marked ``ran_out``.

Prepared the same way on both servers, as root, with node tokens of the seeded nodes:

* 5 organizations of the first collaboration (their nodes log in), tasks to all five of them:
  a few for the status change and ports, ``pool / 5`` more whose runs are completed, ``pool``
  single-organization tasks to kill (both grown later as needed);
* a collaboration of 50 organizations with a node each (40 organizations are added);
* a container token of the first node for one of the status tasks (its subtasks);
* for ``algorithm_status_change`` over the socket: the first node reports the status of its run of a
  status task on ``c`` sockets at once (at most ``c`` events in flight), while the second node's
  sockets count the events the server relays to the collaboration (``socket_status_changes``). On a
  deployment of several processes the sending sockets are spread evenly over them and the second node
  listens on each: an event counts once every process delivered it, as in a network whose nodes and
  users are connected to all the processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket
from seed import IMAGE, USER_PASSWORD, Api

STATUS_TASKS = 4
ORGS = 5
LARGE = 50
RESULT = base64.b64encode(b"r" * 7680).decode()  # ~10 KiB once encoded, as a node sends it


Request = tuple[str, str, str, str]  # method, path, body, "Bearer <token>"


@dataclass
class Pool:
    """The requests of one row; ``cycle``: walk them round and round, else each one once.
    ``grow(n)`` makes ``n`` more fresh requests for a pool that is used up (consuming rows)."""

    requests: list[Request]
    cycle: bool
    used: int = 0
    grow: Callable[[int], list[Request]] | None = None

    def batch(self, limit: int = 100_000) -> list[Request]:
        if self.cycle:
            return self.requests
        return self.requests[self.used : self.used + limit]

    def take(self, count: int) -> None:
        if not self.cycle:
            self.used += count

    def left(self) -> float:
        return float("inf") if self.cycle else len(self.requests) - self.used

    def ensure(self, count: int) -> None:
        """At least ``count`` fresh requests left (made through the API when needed)."""
        if self.grow is not None and self.left() < count:
            self.requests += self.grow(count - int(self.left()))


@dataclass
class SocketData:
    """A node's ``algorithm_status_change`` reports (``event``), and another node of the collaboration
    that hears them relayed."""

    sender: str  # bearer token
    listener: str
    event: dict


@dataclass
class WriteData:
    pools: dict[str, Pool] = field(default_factory=dict)
    socket: SocketData | None = None


def _input() -> str:
    return base64.b64encode(json.dumps({"method": "partial_average"}).encode()).decode()


def _task(collaboration_id: int, orgs: list[int], name: str = "bench-write") -> dict:
    return {
        "name": name,
        "image": IMAGE,
        "collaboration_id": collaboration_id,
        "organizations": [{"id": org, "input": _input()} for org in orgs],
        "databases": [{"label": "default"}],
    }


def _user(username: str, organization: int, role: int) -> dict:
    return {
        "username": username,
        "email": f"{username}@example.org",
        "password": USER_PASSWORD,
        "firstname": "Bench",
        "lastname": username,
        "organization_id": organization,
        "roles": [role],
    }


def _runs_by_org(api: Api, task_ids: list[int]) -> list[tuple[int, int]]:
    """(run id, organization id) of the tasks' runs."""
    found = []
    for task_id in task_ids:
        for run in api.all_rows("/run", {"task_id": task_id}):
            org = run["organization"]
            found.append((run["id"], org["id"] if isinstance(org, dict) else org))
    return found


def prepare(base: str, manifest: dict, pool: int, log) -> WriteData:
    """Create the data of the write rows on the server at ``base`` (``.../api``); ``pool`` is the
    number of fresh items of the consuming rows."""
    started = time.monotonic()
    api = Api(base)
    api.login("root", manifest["root"]["password"])
    root_bearer = f"Bearer {api.token}"
    collab = manifest["collaborations"][0]
    orgs = manifest["organizations"][:ORGS]
    node_of = {n["organization_id"]: n for n in manifest["nodes"] if n["collaboration_id"] == collab}
    node_bearer = {}
    for org in orgs:
        status, tokens = Api(base).request("POST", "/token/node", {"api_key": node_of[org]["api_key"]})
        if status != 200:
            raise SystemExit(f"node login failed: {status} {tokens}")
        node_bearer[org] = f"Bearer {tokens['access_token']}"

    def tasks(count: int, members: list[int]) -> list[int]:
        return [api.call("POST", "/task", _task(collab, members))["id"] for _ in range(count)]

    log(f"  preparing the write rows on {base} (pool {pool}) ...")
    status_tasks = tasks(STATUS_TASKS, orgs)
    status_runs = _runs_by_org(api, status_tasks)

    tag = f"{int(time.time()) % 100000:05d}"
    large_orgs = orgs + manifest["organizations"][ORGS:]
    for i in range(LARGE - len(large_orgs)):
        large_orgs.append(api.call("POST", "/organization", {"name": f"bench-w{tag}-{i:02d}"})["id"])
    root_org = manifest["root"]["organization_id"]
    large = api.call(
        "POST",
        "/collaboration",
        {"name": f"bench-w{tag}-50", "organization_ids": [*large_orgs, root_org], "encrypted": False},
    )["id"]
    for i, org in enumerate(large_orgs):
        api.call("POST", "/node", {"collaboration_id": large, "organization_id": org, "name": f"bw{tag}-{i}"})

    first = orgs[0]
    node = Api(base)
    node.token = node_bearer[first].removeprefix("Bearer ")
    status, token = node.request("POST", "/token/container", {"task_id": status_tasks[0], "image": IMAGE})
    if status != 200:
        raise SystemExit(f"container token refused: {status} {token}")
    container_bearer = f"Bearer {token['container_token']}"

    def patch(run: int, org: int, body: dict) -> Request:
        return ("PATCH", f"/api/run/{run}", json.dumps(body), node_bearer[org])

    now = "2026-01-01T00:00:00.000000"
    completed = {"status": "completed", "result": RESULT, "log": "done\n" * 20, "finished_at": now}
    roles = {r["name"]: r["id"] for r in api.all_rows("/role")}
    user_count = 0

    def completions(count: int) -> list[Request]:
        runs = _runs_by_org(api, tasks(-(-count // ORGS), orgs))
        log(f"  {base}: {len(runs)} more runs to complete")
        return [patch(run, org, completed) for run, org in runs]

    def kills(count: int) -> list[Request]:
        log(f"  {base}: {count} more tasks to kill")
        killed = tasks(count, orgs[:1])
        return [("POST", "/api/kill/task", json.dumps({"id": t}), root_bearer) for t in killed]

    def users(count: int) -> list[Request]:
        nonlocal user_count
        user_count += count
        return [
            ("POST", "/api/user", json.dumps(_user(f"bw{tag}-{i}", first, roles["Researcher"])), root_bearer)
            for i in range(user_count - count, user_count)
        ]

    subtask = _task(collab, [first], "bench-subtask")
    status_run = next(run for run, org in _runs_by_org(api, status_tasks[:1]) if org == first)
    event = {
        "run_id": status_run, "task_id": status_tasks[0], "collaboration_id": collab, "status": "active",
        "node_id": node_of[first]["id"], "organization_id": first, "parent_id": None,
    }  # fmt: skip
    data = WriteData()
    data.pools = {
        "run_status": Pool(
            [patch(run, org, {"status": "active", "started_at": now}) for run, org in status_runs], True
        ),
        "run_complete": Pool(completions(pool), False, grow=completions),
        "task5": Pool([("POST", "/api/task", json.dumps(_task(collab, orgs)), root_bearer)], True),
        "task50": Pool([("POST", "/api/task", json.dumps(_task(large, large_orgs)), root_bearer)], True),
        "port": Pool(
            [
                (
                    "POST",
                    "/api/port",
                    json.dumps({"port": 8000 + i, "run_id": run, "label": "api"}),
                    node_bearer[org],
                )
                for i, (run, org) in enumerate(status_runs)
            ],
            True,
        ),
        "user": Pool(users(max(50, pool // 10)), False, grow=users),
        "kill": Pool(kills(pool), False, grow=kills),
        "subtask": Pool([("POST", "/api/task", json.dumps(subtask), container_bearer)], True),
    }
    data.socket = SocketData(node_bearer[first], node_bearer[orgs[1]], event)
    log(f"  prepared in {time.monotonic() - started:.0f} s")
    return data


# --- algorithm_status_change over the socket: Engine.IO 4 / Socket.IO 5 on a websocket, as the node ---
RELAYED = '42/tasks,["algorithm_status_change"'
# Once connected, the sockets are read and written as raw bytes: the frames of the server are not
# masked, so each relayed event is this text in the stream, and an Engine.IO PING is this frame. Read
# frame by frame in Python (with its UTF-8 check), the c + 1 frames out per event made the load
# generator, one process on the same two cores, the bottleneck of the row.
RELAYED_BYTES = RELAYED.encode()
PING_FRAME = b"\x81\x012"
PONG_FRAME = b"\x81\x81\x00\x00\x00\x003"  # masked with a zero key: the text "3"


def _client_frame(text: str) -> bytes:
    """A client's text frame (masked, with a zero key)."""
    payload = text.encode()
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + b"\x00\x00\x00\x00" + payload


def _process_of(open_packet: str) -> str:
    """The server process of a session of ours: its sid is the base64 of 9 random bytes and the channel
    of its process (``vantage6.socketio.server``), whose queue names the process; "" for a server
    whose sids say nothing of it (the original)."""
    sid = json.loads(open_packet[1:])["sid"]
    body = sid.partition(".")[0]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[9:].decode().partition("!")[0]
    except ValueError:
        return ""


def _connect(
    url: str, bearer: str, processes: int = 1, on: str | None = None
) -> tuple[websocket.WebSocket, str]:
    """A socket in namespace /tasks, authenticated by the handshake's Authorization header, and the
    server process that has it: ``on`` that one if given (connections are spread over the processes
    by the kernel, so a few tries land there)."""
    for _ in range(64):
        ws = websocket.create_connection(
            f"{url.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket",
            header=[f"Authorization: {bearer}"],
            timeout=30,
        )
        process = _process_of(ws.recv()) if processes > 1 else ""  # the Engine.IO open packet
        if on is None or process == on:
            break
        ws.close()
    else:
        raise SystemExit(f"no socket landed on server process {on}")
    ws.send("40/tasks,")
    while not (message := ws.recv()).startswith(("40/tasks", "44/tasks")):
        if message == "2":
            ws.send("3")
    if message.startswith("44"):
        raise SystemExit(f"socket refused: {message}")
    return ws, process


def _listeners(url: str, bearer: str, processes: int) -> list[tuple[websocket.WebSocket, str]]:
    """A socket on each server process."""
    sockets: dict[str, websocket.WebSocket] = {}
    for _ in range(64):
        if len(sockets) == processes:
            return [(ws, process) for process, ws in sockets.items()]
        ws, process = _connect(url, bearer, processes)
        if process in sockets:
            ws.close()
        else:
            sockets[process] = ws
    raise SystemExit(f"the sockets landed on {len(sockets)} of {processes} server processes")


def socket_status_changes(
    url: str, data: SocketData, connections: int, seconds: float, cpu: Callable, processes: int = 1
) -> dict:
    """``algorithm_status_change`` events of a node on ``connections`` sockets (at most
    ``connections`` events in flight, sent in turn on them) for ``seconds`` after a warm-up second,
    each counted when the server has relayed it to the listening node on every one of its
    ``processes``; ``cpu()`` reads the server's CPU seconds. The columns of a row.

    The thread that reads the event's last delivery sends the next one itself (no hand-over to a
    sending thread: the load generator is one Python process on the server's two cores)."""
    listening = _listeners(url, data.listener, processes)
    order = [process for _, process in listening]
    senders = [_connect(url, data.sender, processes, order[i % processes])[0] for i in range(connections)]
    time.sleep(0.5)  # the rooms are joined
    changed = threading.Condition()
    sent: list[float] = []
    # When each listening socket heard each event; an event is heard once all of them have it.
    heard_by: list[list[float]] = [[] for _ in listening]
    heard: list[float] = []
    frame = _client_frame("42/tasks," + json.dumps(["algorithm_status_change", data.event]))
    running = True
    until = 0.0

    def send() -> None:
        """The next event, while there is time (under ``changed``)."""
        if time.monotonic() < until:
            sent.append(time.monotonic())
            senders[len(sent) % connections].sock.sendall(frame)

    def read(ws: websocket.WebSocket, times: list[float] | None) -> None:
        tail = b""  # the end of the last read, where a pattern may begin
        with contextlib.suppress(OSError):
            while running and (data := ws.sock.recv(1 << 16)):
                data = tail + data
                if PING_FRAME in data:
                    ws.sock.sendall(PONG_FRAME)
                tail = data[-len(RELAYED_BYTES) + 1 :]
                if times is not None and (count := data.count(RELAYED_BYTES)):
                    with changed:
                        now = time.monotonic()
                        times += [now] * count
                        while all(len(other) > len(heard) for other in heard_by):
                            heard.append(max(other[len(heard)] for other in heard_by))
                            send()
                        changed.notify_all()

    def burst(end: float) -> None:
        nonlocal until
        with changed:
            until = end
            for _ in range(connections):
                send()
        time.sleep(max(0.0, end - time.monotonic()))
        with changed:
            changed.wait_for(lambda: len(heard) >= len(sent), timeout=30)

    readers = [
        threading.Thread(target=read, args=(ws, times), daemon=True)
        for (ws, _), times in zip(listening, heard_by, strict=True)
    ]
    readers += [threading.Thread(target=read, args=(ws, None), daemon=True) for ws in senders]
    for thread in readers:
        thread.start()
    burst(time.monotonic() + 1)
    first, cpu_before, started = len(sent), cpu(), time.monotonic()
    burst(started + seconds)
    elapsed, cpu_used = time.monotonic() - started, cpu() - cpu_before
    running = False
    for ws in (*(ws for ws, _ in listening), *senders):
        with contextlib.suppress(OSError, websocket.WebSocketException):
            ws.close(timeout=1)
    events = len(heard) - first
    latencies = sorted(b - a for a, b in zip(sent[first:], heard[first:], strict=False))
    return {
        "rps": events / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "requests": events,
        "non2xx": len(sent) - len(heard),  # not relayed within 30 s
        "socket_errors": "",
        "mode": "socket",
        "cpu_ms": cpu_used * 1000 / max(events, 1),
    }
