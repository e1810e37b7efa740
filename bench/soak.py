"""Soak: the two-replica deployment under steady work, through one RabbitMQ restart and one replica kill.

    .venv/bin/python bench/soak.py                # 10 minutes
    .venv/bin/python bench/soak.py --minutes 3

The deployment is the fault suite's (tests/faults/topology.py): a private PostgreSQL and RabbitMQ,
two replicas and nginx from scripts/cluster.sh; needs root and the Debian packages, as that does.
50 nodes (python-socketio, set up as the official node) connect through the proxy and complete each
run as soon as they learn of it; 5 users each create a task for 5 random organizations, wait for its
results and read them, and start again. At a third of the time RabbitMQ is killed for 20 s; at two
thirds replica-2 is killed (SIGKILL) and started again 5 s later. At the end the users stop, the
nodes get a minute to finish what is open and disconnect, and the table is printed:
requests, errors by status, tasks created and runs completed, ``new_task`` events that did not arrive
live and runs never handed to their node (lost for good), the RSS of each replica, the sessions and
open rows left, and what the node of each unfinished run knew of it.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")

import django  # noqa: E402

django.setup()

from tests.faults.topology import Node, Topology, run_in_checkout  # noqa: E402

NODES = 50
USERS = 5
ORGANIZATIONS_PER_TASK = 5
PASSWORD = "Soak-passw0rd!"
BROKER_OUTAGE_SECONDS = 20
KILLED_REPLICA = "replica-2"
KILLED_SECONDS = 5


class CountingTopology(Topology):
    """Counts every answer (and failed request) of the soak's clients by status."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, V6_LOG_LEVEL="warning")
        self.statuses: collections.Counter = collections.Counter()
        self.slowest = 0.0
        self.lock = threading.Lock()

    def request(self, method: str, path: str, token: str | None = None, **kwargs: object):
        try:
            response, elapsed = super().request(method, path, token, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.statuses[type(exc).__name__] += 1
            raise
        with self.lock:
            self.statuses[response.status_code] += 1
            self.slowest = max(self.slowest, elapsed)
        return response, elapsed


def network(topology: Topology, folder: Path) -> dict:
    """50 organizations in one collaboration, a node for each and 5 researchers; described as the
    demo network is (``Topology.demo``)."""
    lines = ["organizations:"] + [f"  - name: soak-{n}" for n in range(NODES)]
    lines += ["collaborations:", "  - name: soak", "    encrypted: false", "    organizations:"]
    lines += [f"      - soak-{n}" for n in range(NODES)]
    lines += ["users:"]
    for n in range(USERS):
        lines += [
            f"  - username: soak-user-{n}",
            f"    organization: soak-{n}",
            f"    email: soak-user-{n}@example.org",
            f'    password: "{PASSWORD}"',
            "    roles: [Researcher]",
        ]
    lines += ["nodes:"]
    lines += [
        f"  - {{organization: soak-{n}, collaboration: soak, name: soak-node-{n}}}" for n in range(NODES)
    ]
    fixture = folder / "soak.yaml"
    fixture.write_text("\n".join(lines) + "\n")
    loaded = run_in_checkout([sys.executable, "manage.py", "import", str(fixture)], topology.env, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    keys = dict(line.split() for line in loaded.stdout.splitlines() if line.strip().startswith("soak-node-"))
    root = topology.login("root", topology.env["V6_ROOT_PASSWORD"])
    found, _ = topology.request("GET", "/node", root, params={"name": "soak-node-%", "per_page": 100})
    nodes = found.json()["data"]
    collaboration = nodes[0]["collaboration"]["id"]
    return {
        "collaboration": {"id": collaboration},
        "nodes": [
            {"id": n["id"], "organization_id": n["organization"]["id"], "api_key": keys[n["name"]]}
            for n in nodes
            if n["name"] in keys
        ],
        "users": [f"soak-user-{n}" for n in range(USERS)],
    }


def researcher(topology: Topology, username: str, stop: threading.Event, created: list[tuple]) -> None:
    """Creates a task, waits for its results and reads them; again until ``stop``."""
    token = topology.login(username, PASSWORD)
    organizations = [node["organization_id"] for node in topology.demo["nodes"]]
    while not stop.is_set():
        chosen = random.sample(organizations, ORGANIZATIONS_PER_TASK)
        body = topology.task_body(f"soak-{username}")
        body["organizations"] = [{"id": org, "input": body["organizations"][0]["input"]} for org in chosen]
        try:
            response, _ = topology.request("POST", "/task", token, json=body)
            if response.status_code != 201:
                time.sleep(1)
                continue
            task_id = response.json()["id"]
            created.append((task_id, tuple(chosen)))
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                runs, _ = topology.request("GET", "/run", token, params={"task_id": task_id})
                if runs.status_code == 200 and all(run["finished_at"] for run in runs.json()["data"]):
                    topology.request("GET", "/result", token, params={"task_id": task_id})
                    break
                time.sleep(0.5)
        except requests.RequestException:
            time.sleep(1)


def rss_mib(topology: Topology) -> dict[str, float]:
    sizes = {}
    for replica in topology.replicas:
        status = Path(f"/proc/{topology.pid(replica)}/status")
        if topology.alive(replica):
            kib = next(
                int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS")
            )
            sizes[replica] = kib / 1024
    return sizes


def soak(minutes: float) -> None:
    with tempfile.TemporaryDirectory(prefix="v6-soak-") as folder:
        topology = CountingTopology(Path(folder))
        try:
            print("starting the deployment ...", flush=True)
            topology.start()
            topology.demo = network(topology, Path(folder))
            nodes = [Node(topology, info, complete_runs=True) for info in topology.demo["nodes"]]
            ready = sum(node.wait_connected(1, 60) for node in nodes)
            print(f"{ready} of {len(nodes)} nodes connected; running {minutes} minutes", flush=True)
            report = run(topology, nodes, minutes * 60)
        finally:
            topology.close()
    print_table(report)


def run(topology: Topology, nodes: list[Node], seconds: float) -> dict:
    stop, created = threading.Event(), []
    users = [
        threading.Thread(target=researcher, args=(topology, name, stop, created), daemon=True)
        for name in topology.demo["users"]
    ]
    rss = {"start": rss_mib(topology)}
    started = time.monotonic()
    for user in users:
        user.start()
    events: list[str] = []

    def at(fraction: float) -> None:
        time.sleep(max(0.0, started + seconds * fraction - time.monotonic()))

    at(1 / 3)
    events.append(f"{time.monotonic() - started:.0f} s: RabbitMQ killed for {BROKER_OUTAGE_SECONDS} s")
    topology.rabbitmq.kill()
    time.sleep(BROKER_OUTAGE_SECONDS)
    topology.rabbitmq.start()
    at(1 / 2)
    rss["middle"] = rss_mib(topology)
    at(2 / 3)
    events.append(f"{time.monotonic() - started:.0f} s: {KILLED_REPLICA} killed (SIGKILL)")
    topology.signal(KILLED_REPLICA, signal.SIGKILL)
    time.sleep(KILLED_SECONDS)
    topology.restart(KILLED_REPLICA)
    at(1)
    rss["end"] = rss_mib(topology)
    stop.set()
    for user in users:
        user.join(60)
    elapsed = time.monotonic() - started

    # The nodes finish what is open (a task whose events were lost waits for the next sync).
    deadline = time.monotonic() + 60
    while (
        topology.sql("SELECT count(*) FROM run WHERE finished_at IS NULL")[0][0]
        and time.monotonic() < deadline
    ):
        time.sleep(1)
    task_ids = [task_id for task_id, _ in created]
    by_organization = {node.info["organization_id"]: node for node in nodes}
    late = sum(
        1 for task_id, chosen in created for org in chosen if task_id not in by_organization[org].announced
    )
    runs = topology.sql("SELECT id, organization_id FROM run WHERE task_id = ANY(%s)", task_ids)
    lost = sum(1 for run_id, org in runs if run_id not in by_organization[org].runs)
    for node in nodes:
        node.close()
    time.sleep(10)  # pingInterval + pingTimeout and a sweep of the fast timers: abandoned sessions end
    ((runs_created, runs_completed),) = topology.sql(
        "SELECT count(*), count(finished_at) FROM run WHERE task_id = ANY(%s)", task_ids
    )
    left = {table: topology.sql(f"SELECT count(*) FROM {table}")[0][0] for table in ("socket_process",)}
    left["nodes online"] = topology.sql("SELECT count(*) FROM authenticatable WHERE status = 'online'")[0][0]
    left["open runs"] = topology.sql("SELECT count(*) FROM run WHERE finished_at IS NULL")[0][0]
    unfinished = [
        describe(by_organization[organization], run_id, task_id, float(age), started)
        for run_id, task_id, organization, age in topology.sql(
            "SELECT r.id, r.task_id, r.organization_id, extract(epoch FROM now() - t.created_at)"
            " FROM run r JOIN task t ON t.id = r.task_id WHERE r.finished_at IS NULL ORDER BY r.id"
        )
    ]
    return {
        "seconds": elapsed,
        "events": events,
        "statuses": topology.statuses,
        "slowest": topology.slowest,
        "tasks": len(created),
        "runs created": runs_created,
        "runs completed": runs_completed,
        "late": late,
        "lost": lost,
        "expected events": sum(len(chosen) for _, chosen in created),
        "rss": rss,
        "left": left,
        "nodes": len(nodes),
        "unfinished": unfinished,
    }


def describe(node: Node, run_id: int, task_id: int, age: float, started: float) -> str:
    """What the node of an unfinished run knew of it, for finding where it was lost."""
    refused = [status for run, status in node.refused if run == run_id]
    return (
        f"run {run_id} of task {task_id} (made {time.monotonic() - age - started:.0f} s in), node {node.id}:"
        f" task announced {task_id in node.announced}, run handed {node.runs.get(run_id, 0)} times,"
        f" PATCH refused {refused or 'never'}, connects {node.connects},"
        f" disconnects at {[round(at - started) for at in node.disconnects]} s,"
        f" syncs at {[round(at - started) for at in node.syncs]} s"
    )


def print_table(report: dict) -> None:
    statuses = report["statuses"]
    served = sum(count for status, count in statuses.items() if isinstance(status, int))
    errors = {
        status: count for status, count in statuses.items() if not (isinstance(status, int) and status < 400)
    }
    rows = [
        ("duration", f"{report['seconds'] / 60:.1f} min, {report['nodes']} nodes, {USERS} users"),
        *(("fault", event) for event in report["events"]),
        ("requests served", f"{served} ({served / report['seconds']:.0f}/s)"),
        ("slowest answer", f"{report['slowest']:.1f} s"),
        ("errors by status", ", ".join(f"{s}: {n}" for s, n in sorted(errors.items(), key=str)) or "none"),
        ("tasks created", str(report["tasks"])),
        ("runs created / completed", f"{report['runs created']} / {report['runs completed']}"),
        ("new_task events not live", f"{report['late']} of {report['expected events']}"),
        ("runs never handed to their node", str(report["lost"])),
    ]
    for replica in sorted(report["rss"]["start"]):
        sizes = [report["rss"][moment].get(replica) for moment in ("start", "middle", "end")]
        rows.append(
            (f"RSS {replica} start/middle/end", " / ".join(f"{s:.0f} MiB" if s else "-" for s in sizes))
        )
    rows.append(("left after the run", ", ".join(f"{name}: {n}" for name, n in report["left"].items())))
    width = max(len(name) for name, _ in rows)
    print()
    print(f"| {'what'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    for line in report["unfinished"]:
        print(f"unfinished: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the run (default 10)")
    soak(parser.parse_args().minutes)


if __name__ == "__main__":
    main()
