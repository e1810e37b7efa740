"""The write rows of ``api.py``: data prepared through the API so that every request of a row succeeds.

Writes change what they touch, so a row cannot repeat one request forever. Each row gets a *pool*:
a list of requests (method, path, body, token) that ``wrk`` walks through in order. Rows whose
request can be repeated (a run set to ``active`` again, a new port, a new task) cycle through a
small pool; rows that consume what they touch (completing a run, killing a task, creating a user
with a unique name) get a pool of fresh items, and each ``wrk`` run starts where the last stopped.
A pool that runs dry shows as non-2xx answers in the tables.

Prepared the same way on both servers, as root, with node tokens of the seeded nodes:

* 5 organizations of the first collaboration (their nodes log in), tasks to all five of them:
  a few for the status change and ports, ``pool / 5`` more whose runs are completed, ``pool``
  single-organization tasks to kill;
* a collaboration of 50 organizations with a node each (40 organizations are added);
* a container token of the first node for one of the status tasks (its subtasks).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field

from seed import IMAGE, USER_PASSWORD, Api

STATUS_TASKS = 4
ORGS = 5
LARGE = 50
RESULT = base64.b64encode(b"r" * 7680).decode()  # ~10 KiB once encoded, as a node sends it


@dataclass
class Pool:
    """The requests of one row; ``cycle``: walk them round and round, else each one once."""

    requests: list[tuple[str, str, str, str]]
    cycle: bool
    used: int = 0

    def batch(self, limit: int = 100_000) -> list[tuple[str, str, str, str]]:
        if self.cycle:
            return self.requests
        return self.requests[self.used : self.used + limit]

    def take(self, count: int) -> None:
        if not self.cycle:
            self.used += count


@dataclass
class WriteData:
    pools: dict[str, Pool] = field(default_factory=dict)


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
    completion_runs = _runs_by_org(api, tasks(max(1, pool // ORGS), orgs))
    kill_tasks = tasks(pool, orgs[:1])

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

    def patch(run: int, body: dict) -> tuple[str, str, str, str]:
        return ("PATCH", f"/api/run/{run}", json.dumps(body), node_bearer[org_of[run]])

    org_of = dict(status_runs + completion_runs)
    now = "2026-01-01T00:00:00.000000"
    completed = {"status": "completed", "result": RESULT, "log": "done\n" * 20, "finished_at": now}
    roles = {r["name"]: r["id"] for r in api.all_rows("/role")}
    users = [
        json.dumps(
            {
                "username": f"bw{tag}-{i}",
                "email": f"bw{tag}-{i}@example.org",
                "password": USER_PASSWORD,
                "firstname": "Bench",
                "lastname": f"W{i}",
                "organization_id": first,
                "roles": [roles["Researcher"]],
            }
        )
        for i in range(max(50, pool // 10))
    ]
    subtask = _task(collab, [first], "bench-subtask")
    data = WriteData()
    data.pools = {
        "run_status": Pool(
            [patch(run, {"status": "active", "started_at": now}) for run, _ in status_runs], True
        ),
        "run_complete": Pool([patch(run, completed) for run, _ in completion_runs], False),
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
        "user": Pool([("POST", "/api/user", body, root_bearer) for body in users], False),
        "kill": Pool(
            [("POST", "/api/kill/task", json.dumps({"id": t}), root_bearer) for t in kill_tasks], False
        ),
        "subtask": Pool([("POST", "/api/task", json.dumps(subtask), container_bearer)], True),
    }
    log(f"  prepared in {time.monotonic() - started:.0f} s")
    return data
