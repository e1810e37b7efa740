"""The deployment the fault tests break: on the private PostgreSQL and RabbitMQ (to stop and start for real),
two server replicas and nginx started by ``scripts/cluster.sh``, the demo network in it, and nodes that
behave as the official node does.

``Node`` drives python-socketio as the official node sets it up (``NodeSocket``) and answers its events
as the node does: on ``sync`` it lists its open runs, on ``new_task`` the runs of that task, on
``expired_token`` / ``invalid_token`` it refreshes its token and connects again; a request answered
with an error is sent once more. Runs it learns of are recorded (with how often), and ``complete``
PATCHes one as the node does when its algorithm ends (with ``complete_runs``, each run as soon as the
node learns of it).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.ops import services
from tests.realtime.helpers import NodeSocket
from tests.realtime.live import FAST_TIMERS, ROOT, free_port, sql_apart
from vantage6.client import Client

CLUSTER = str(ROOT / "scripts" / "cluster.sh")
ROOT_PASSWORD = "Faults-Passw0rd!"
# A request while something is down is answered within this many seconds (connect_timeout is 5 s).
BOUND = 6


def run_in_checkout(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


class Topology:
    """PostgreSQL, RabbitMQ, ``replica-1``, ``replica-2`` and the proxy at ``url``."""

    def __init__(
        self,
        folder: Path,
        postgres: services.PrivateService,
        rabbitmq: services.PrivateService,
        **settings: str,
    ) -> None:
        self.folder = folder
        self.postgres, self.rabbitmq = postgres, rabbitmq
        self.state = folder / "cluster"
        self.settings = settings
        self.env: dict[str, str] = {}
        self.url = ""
        self.replicas: dict[str, str] = {}
        self.demo: dict = {}

    # --- life cycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self.postgres.new_database()
        base = {key: value for key, value in os.environ.items() if not key.startswith("V6_")}
        self.env = {
            **base,
            **FAST_TIMERS,
            # The nodes here send no ``ping`` heartbeat (the official node's comes every 60 s): with
            # the fast timeout the sweep would mark them offline while their sockets are up.
            "V6_NODE_HEARTBEAT_TIMEOUT": "65",
            "V6_DATABASE_URL": self.postgres.url,
            "V6_RABBITMQ_URI": self.rabbitmq.url,
            "V6_CLUSTER_DIR": str(self.state),
            "V6_CLUSTER_PORT": str(free_port()),
            "V6_ROOT_PASSWORD": ROOT_PASSWORD,
            "V6_BCRYPT_ROUNDS": "4",
            **self.settings,
        }
        started = run_in_checkout([CLUSTER, "start"], self.env, timeout=300)
        assert started.returncode == 0, started.stderr
        self.url = started.stdout.strip().splitlines()[-1]
        status = run_in_checkout([CLUSTER, "status"], self.env, timeout=30).stdout
        urls = next(line for line in status.splitlines() if line.startswith("replicas:")).split()[1:]
        self.replicas = {f"replica-{number}": url for number, url in enumerate(urls, start=1)}
        demo = run_in_checkout([sys.executable, "manage.py", "demo", "--json"], self.env, timeout=120)
        assert demo.returncode == 0, demo.stderr
        self.demo = json.loads(demo.stdout)

    def close(self) -> None:
        if self.env:
            run_in_checkout([CLUSTER, "stop"], self.env, timeout=120)

    # --- the server replicas ----------------------------------------------------------------------------
    def pid(self, replica: str) -> int:
        return int((self.state / f"{replica}.pid").read_text())

    def log(self, replica: str) -> Path:
        return self.state / f"{replica}.log"

    def signal(self, replica: str, number: signal.Signals, *, within: float = 30) -> float:
        """Send ``number`` to the replica and wait until it exited; the seconds that took."""
        pid, started = self.pid(replica), time.monotonic()
        os.kill(pid, number)
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            assert time.monotonic() - started < within, f"{replica} still runs {within} s after {number!r}"
            time.sleep(0.05)
        return time.monotonic() - started

    def restart(self, replica: str) -> None:
        started = run_in_checkout([CLUSTER, "replica", replica], self.env, timeout=120)
        assert started.returncode == 0, started.stderr

    def alive(self, replica: str) -> bool:
        pid = self.pid(replica)
        return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)

    # --- requests ----------------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, token: str | None = None, *, base: str | None = None, **kwargs: object
    ) -> tuple[requests.Response, float]:
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **kwargs.pop("headers", {})}
        started = time.monotonic()
        response = requests.request(
            method, f"{base or self.url}/api{path}", headers=headers, timeout=30, **kwargs
        )
        return response, time.monotonic() - started

    def login(self, username: str | None = None, password: str | None = None) -> str:
        body = {
            "username": username or self.demo["username"],
            "password": password or self.demo["password"],
        }
        response, _ = self.request("POST", "/token/user", json=body)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def client(self) -> Client:
        """The official client (vantage6-client 4.15.2) of the demo researcher, through the proxy."""
        host, port = self.url.rsplit(":", 1)
        client = Client(host, int(port), "/api", log_level="critical")
        client.authenticate(self.demo["username"], self.demo["password"])
        client.setup_encryption(None)
        return client

    def client_task(self, client: Client, name: str) -> int:
        """A task for every organization of the demo network, made by the official client."""
        task = client.task.create(
            collaboration=self.demo["collaboration"]["id"],
            organizations=[node["organization_id"] for node in self.demo["nodes"]],
            name=name,
            image="some/image",
            description="",
            input_={"method": "m"},
            databases=[{"label": "default"}],
        )
        assert "id" in task, task
        return task["id"]

    def task_body(self, name: str, input_: str | None = None) -> dict:
        plain = input_ or base64.b64encode(json.dumps({"method": "m"}).encode()).decode()
        return {
            "name": name,
            "image": "some/image",
            "collaboration_id": self.demo["collaboration"]["id"],
            "organizations": [{"id": node["organization_id"], "input": plain} for node in self.demo["nodes"]],
            "databases": [{"label": "default"}],
        }

    def create_task(self, token: str, name: str, *, base: str | None = None) -> int:
        response, _ = self.request("POST", "/task", token, base=base, json=self.task_body(name))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def health_becomes(self, status: int, within: float, *, base: str | None = None) -> requests.Response:
        deadline = time.monotonic() + within
        while True:
            response, elapsed = self.request("GET", "/health", base=base)
            assert elapsed < BOUND
            if response.status_code == status or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    # --- the database, as its administrator -------------------------------------------------------------
    def sql(self, query: str, *args: object, superuser: bool = False) -> list[tuple]:
        url = self.postgres.url
        if superuser:
            url = url.replace("vantage6:vantage6@", "postgres@")
        return sql_apart(query, *args, dsn=url)

    def runs_of(self, task_ids: list[int]) -> dict[int, int]:
        """Run id -> organization id of the runs of these tasks."""
        rows = self.sql("SELECT id, organization_id FROM run WHERE task_id = ANY(%s)", list(task_ids))
        return dict(rows)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0]
    except (FileNotFoundError, IndexError):
        return "zombie"


class Node:
    """A node of the demo network, connected through ``url`` as the official node connects."""

    def __init__(
        self,
        topology: Topology,
        info: dict,
        *,
        transports: list[str] | None = None,
        tokens: tuple[str, str] | None = None,
        complete_runs: bool = False,
    ) -> None:
        self.topology = topology
        self.info = info
        self.id = info["id"]
        self.transports = transports
        self.complete_runs = complete_runs
        self.announced: set[int] = set()  # tasks a new_task event was heard of
        self.last_room = (
            f"collaboration_{topology.demo['collaboration']['id']}_organization_{info['organization_id']}"
        )
        self.runs: dict[int, int] = {}  # run id -> how often the node was handed it
        self.completed: set[int] = set()
        self.refused: list[tuple[int, int]] = []  # (run id, status) of PATCHes the server refused
        self.connects = 0  # connections that became ready (joined the node's rooms)
        self.disconnects: list[float] = []
        self.syncs: list[float] = []  # when each ``sync`` came
        self.history: list[tuple[float, str]] = []  # (when, what) of each connect, disconnect and join
        self.changed = threading.Condition()  # guards the records above
        self.access, self.refresh = tokens or self._log_in()
        self.socket: NodeSocket | None = None
        self._stop = threading.Event()
        self._connect()
        self._worker = threading.Thread(target=self._handle_events, daemon=True)
        self._worker.start()

    def _log_in(self) -> tuple[str, str]:
        response, _ = self.topology.request("POST", "/token/node", json={"api_key": self.info["api_key"]})
        assert response.status_code == 200, response.text
        return response.json()["access_token"], response.json()["refresh_token"]

    def _connect(self) -> None:
        url, transports = self.topology.url, self.transports
        self.socket = NodeSocket(url, self.access, transports=transports, heard=self._heard)

    # --- what the node does on each event ----------------------------------------------------------------
    def _handle_events(self) -> None:
        while not self._stop.is_set():
            socket = self.socket
            try:
                name, data = socket.events.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._on(name, data)
            except requests.RequestException:
                continue  # a request during an outage: the next sync lists the runs again

    def _heard(self, name: str, data: object) -> None:
        """The connection's state as its events arrive: not after the requests of those before them
        (a ``sync``'s, seconds on a loaded machine)."""
        if name in ("connect", "disconnect") or (name == "message" and "joined room" in str(data)):
            with self.changed:
                self.history.append((time.monotonic(), f"{name} {data}" if data else name))
        if name == "message" and str(data).endswith(f"joined room {self.last_room}"):
            with self.changed:  # ready: events to every room of the node reach it from now on
                self.connects += 1
                self.changed.notify_all()
        elif name == "disconnect":
            with self.changed:
                self.disconnects.append(time.monotonic())
                self.changed.notify_all()

    def _on(self, name: str, data: object) -> None:
        if name == "sync":
            with self.changed:
                self.syncs.append(time.monotonic())
            self._fetch({"state": "open", "node_id": self.id, "include": "task"})
        elif name == "new_task":
            with self.changed:
                self.announced.add(data["id"])
            self._fetch({"state": "open", "node_id": self.id, "include": "task", "task_id": data["id"]})
        elif name in ("expired_token", "invalid_token"):
            self.socket.close()
            if name == "expired_token":
                response, _ = self.topology.request("POST", "/token/refresh", self.refresh)
                assert response.status_code == 200, response.text
                self.access, self.refresh = response.json()["access_token"], response.json()["refresh_token"]
            else:
                self.access, self.refresh = self._log_in()
            self._connect()

    def _request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        """As the official node's client: an answer above 210 (a 502 from the proxy, say) gets the
        request sent once more (it refreshes its token first, which changes nothing here)."""
        response, _ = self.topology.request(method, path, self.access, **kwargs)
        if response.status_code > 210:
            response, _ = self.topology.request(method, path, self.access, **kwargs)
        return response

    def _fetch(self, params: dict) -> None:
        page = 1
        while True:
            response = self._request("GET", "/run", params={**params, "page": page})
            if response.status_code != 200:
                return
            body = response.json()
            with self.changed:
                for run in body["data"]:
                    self.runs[run["id"]] = self.runs.get(run["id"], 0) + 1
                self.changed.notify_all()
            if self.complete_runs:  # as if each algorithm ended at once
                for run in body["data"]:
                    if run["id"] not in self.completed:
                        self.complete(run["id"])
            if not body["links"].get("next"):
                return
            page += 1

    # --- for the tests -----------------------------------------------------------------------------------
    def own(self, runs: dict[int, int]) -> set[int]:
        """Those of ``runs`` (run id -> organization id) that are this node's."""
        return {run for run, organization in runs.items() if organization == self.info["organization_id"]}

    def wait_runs(self, run_ids: set[int], timeout: float) -> set[int]:
        """The runs of ``run_ids`` the node has not been handed within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (missing := run_ids - set(self.runs)) and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(min(left, 0.5))
        return missing

    def wait_connected(self, connects: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.connects < connects and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(min(left, 0.5))
            return self.connects >= connects

    def account(self, origin: float) -> str:
        """Why a node may not have come back, for a failure message: its events, in seconds from
        ``origin`` (a ``time.monotonic()``), and its client's state."""
        with self.changed:
            events = [f"{at - origin:+.2f}s {what}" for at, what in self.history]
        return f"node {self.id}: {'; '.join(events)}; {self.socket.state()}"

    def complete(self, run_id: int, *, started: bool = False) -> int:
        """Start (unless ``started``) and finish ``run_id`` as the node does; the status of the last PATCH."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        bodies = [{"status": "completed", "result": "cmVzdWx0", "log": "done", "finished_at": now}]
        if not started:
            bodies.insert(0, {"started_at": now})
        for body in bodies:
            response = self._request("PATCH", f"/run/{run_id}", json=body)
            if response.status_code != 200:
                with self.changed:
                    self.refused.append((run_id, response.status_code))
                return response.status_code
        with self.changed:
            self.completed.add(run_id)
        return 200

    def close(self) -> None:
        self._stop.set()
        self._worker.join(5)
        if self.socket is not None:
            self.socket.close()
