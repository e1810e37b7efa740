"""Fill a vantage6-compatible server with the benchmark dataset, through its REST API only.

Run it against a fresh server (ours or the original vantage6-server 4.15.2) so that both hold the same
data; it logs in as root and creates, in this order:

* 10 organizations, 3 collaborations holding all of them (and root's organization, so that root may
  create tasks there),
* 50 users (5 per organization) with the default roles Organization Admin, Researcher (2),
  Viewer and Collaboration Admin,
* one node per (organization, collaboration): 30 nodes,
* 200 tasks by root, each for 3 organizations: 600 runs.

``--extend-nodes 300`` adds collaborations of the 10 organizations and their nodes until the dataset
has that many benchmark nodes (for the node-login row; it changes the list endpoints' data, so run it
after the other rows). Node api keys, ids and credentials go to the manifest (``--out``), which
``api.py`` reads. Only the standard library is used.

    python bench/seed.py --url http://127.0.0.1:7602/api --root-password root --out m.json
    python bench/seed.py --url http://127.0.0.1:7602/api --root-password root --out m.json --extend-nodes 300
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ORGANIZATIONS = 10
COLLABORATIONS = 3
USERS_PER_ORG = 5
TASKS = 200
ORGS_PER_TASK = 3
USER_PASSWORD = "Bench-password-1!"
IMAGE = "harbor2.vantage6.ai/demo/average"
# Role of the n-th user of each organization.
USER_ROLES = ("Organization Admin", "Researcher", "Researcher", "Viewer", "Collaboration Admin")


class Api:
    """A small keep-alive JSON client on http.client."""

    def __init__(self, url: str, timeout: float = 300.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise SystemExit("only http:// URLs on this machine are supported")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.token: str | None = None
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: object = None, params: dict | None = None) -> tuple:
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, target, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return response.status, payload

    def call(self, method: str, path: str, body: object = None, params: dict | None = None, ok=(200, 201)):
        status, payload = self.request(method, path, body, params)
        if status not in ok:
            raise SystemExit(f"{method} {path} -> {status}: {payload}")
        return payload

    def login(self, username: str, password: str) -> dict:
        self.token = None
        tokens = self.call("POST", "/token/user", {"username": username, "password": password})
        self.token = tokens["access_token"]
        return tokens

    def all_rows(self, path: str, params: dict | None = None) -> list[dict]:
        rows, page = [], 1
        while True:
            batch = self.call("GET", path, params={**(params or {}), "page": page, "per_page": 100})["data"]
            rows.extend(batch)
            if len(batch) < 100:
                return rows
            page += 1


def _ref_id(value: object) -> int | None:
    return value.get("id") if isinstance(value, dict) else value


def _encoded_input(i: int) -> str:
    payload = {"method": "partial_average", "kwargs": {"column_name": f"age_{i % 7}"}}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def _progress(label: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{label}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _create_node(api: Api, collaboration_id: int, organization_id: int, name: str) -> dict:
    node = api.call(
        "POST",
        "/node",
        {"collaboration_id": collaboration_id, "organization_id": organization_id, "name": name},
    )
    return {
        "id": node["id"],
        "name": name,
        "api_key": node["api_key"],
        "organization_id": organization_id,
        "collaboration_id": collaboration_id,
    }


def seed(api: Api, root_password: str) -> dict:
    started = time.monotonic()
    root = api.login("root", root_password)
    me = api.call("GET", root["user_url"].removeprefix(api.prefix))
    root_org = _ref_id(me["organization"])

    orgs = []
    for i in range(ORGANIZATIONS):
        org = api.call(
            "POST",
            "/organization",
            {
                "name": f"bench-org-{i:02d}",
                "domain": f"org{i:02d}.example.org",
                "address1": f"Street {i}",
                "zipcode": f"{1000 + i}",
                "country": "NL" if i % 2 else "BE",
            },
        )
        orgs.append(org["id"])

    collabs = []
    for c in range(COLLABORATIONS):
        collab = api.call(
            "POST",
            "/collaboration",
            {"name": f"bench-collab-{c}", "organization_ids": [*orgs, root_org], "encrypted": False},
        )
        collabs.append(collab["id"])

    roles = {r["name"]: r["id"] for r in api.all_rows("/role")}
    users = []
    for o, org_id in enumerate(orgs):
        for u in range(USERS_PER_ORG):
            username = f"bench-user-{o:02d}-{u}"
            role = USER_ROLES[u % len(USER_ROLES)]
            user = api.call(
                "POST",
                "/user",
                {
                    "username": username,
                    "email": f"{username}@org{o:02d}.example.org",
                    "password": USER_PASSWORD,
                    "firstname": f"First{o}{u}",
                    "lastname": f"Last{o}{u}",
                    "organization_id": org_id,
                    "roles": [roles[role]],
                },
            )
            users.append({"id": user["id"], "username": username, "role": role, "organization_id": org_id})
        _progress("users", len(users), ORGANIZATIONS * USERS_PER_ORG)

    nodes = []
    for c, collab_id in enumerate(collabs):
        for o, org_id in enumerate(orgs):
            nodes.append(_create_node(api, collab_id, org_id, f"bench-node-c{c}-o{o:02d}"))
            _progress("nodes", len(nodes), len(collabs) * len(orgs))

    tasks = []
    for t in range(TASKS):
        collab_id = collabs[t % len(collabs)]
        members = [orgs[(t + k) % len(orgs)] for k in range(ORGS_PER_TASK)]
        task = api.call(
            "POST",
            "/task",
            {
                "name": f"bench-task-{t:03d}",
                "description": f"benchmark task {t}",
                "image": IMAGE,
                "collaboration_id": collab_id,
                "organizations": [{"id": org_id, "input": _encoded_input(t)} for org_id in members],
                "databases": [{"label": "default"}],
            },
        )
        tasks.append(task["id"])
        _progress("tasks", len(tasks), TASKS)

    runs = api.all_rows("/run", {"task_id": tasks[0]})
    return {
        "url": f"http://{api.host}:{api.port}{api.prefix}",
        "root": {"id": me["id"], "organization_id": root_org, "password": root_password},
        "user_password": USER_PASSWORD,
        "organizations": orgs,
        "collaborations": collabs,
        "users": users,
        "nodes": nodes,
        "tasks": tasks,
        "runs": [r["id"] for r in runs],
        "seconds": round(time.monotonic() - started, 1),
    }


def extend_nodes(api: Api, manifest: dict, total: int) -> dict:
    """Add collaborations of the benchmark organizations, with a node each, up to ``total`` nodes."""
    api.login("root", manifest["root"]["password"])
    orgs = manifest["organizations"]
    nodes = manifest["nodes"]
    extra = manifest.setdefault("extra_collaborations", [])
    while len(nodes) < total:
        k = len(extra)
        collab = api.call(
            "POST",
            "/collaboration",
            {"name": f"bench-extra-collab-{k:02d}", "organization_ids": orgs, "encrypted": False},
        )
        extra.append(collab["id"])
        for o, org_id in enumerate(orgs):
            if len(nodes) >= total:
                break
            nodes.append(_create_node(api, collab["id"], org_id, f"bench-node-x{k:02d}-o{o:02d}"))
            _progress("nodes", len(nodes), total)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="API base, e.g. http://127.0.0.1:7602/api")
    parser.add_argument("--root-password", default="root")
    parser.add_argument("--out", required=True, type=Path, help="manifest file (JSON)")
    parser.add_argument("--extend-nodes", type=int, help="grow an existing dataset to this many nodes")
    args = parser.parse_args()

    api = Api(args.url)
    if args.extend_nodes:
        manifest = extend_nodes(api, json.loads(args.out.read_text()), args.extend_nodes)
    else:
        manifest = seed(api, args.root_password)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(manifest, indent=1))
    print(
        f"{args.url}: {len(manifest['organizations'])} organizations, "
        f"{len(manifest['collaborations']) + len(manifest.get('extra_collaborations', []))} collaborations, "
        f"{len(manifest['users'])} users, {len(manifest['nodes'])} nodes, {len(manifest['tasks'])} tasks"
    )


if __name__ == "__main__":
    main()
