"""Tokens of every kind of caller on a server with the demo network (``manage.py demo --json``), as JSON:
root, a researcher, a collaboration admin, an organization admin, a node and an algorithm container.

    python scripts/fuzz/identities.py API_URL DEMO_JSON ROOT_PASSWORD > tokens.json

The two admins are created (once) in the first demo node's organization; the container's token is of a
task of that organization, created by the researcher.
"""

from __future__ import annotations

import json
import sys

import requests

ADMINS = {"collaboration-admin": "Collaboration Admin", "organization-admin": "Organization Admin"}
ADMIN_PASSWORD = "Fuzz-Admin-123!"


def _login(api: str, username: str, password: str) -> str:
    answer = requests.post(f"{api}/token/user", json={"username": username, "password": password}, timeout=30)
    answer.raise_for_status()
    return answer.json()["access_token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def identities(api: str, demo: dict, root_password: str) -> dict[str, str]:
    root = _login(api, "root", root_password)
    roles = requests.get(f"{api}/role", headers=_bearer(root), params={"per_page": 100}, timeout=30).json()
    role_ids = {role["name"]: role["id"] for role in roles["data"]}
    node = demo["nodes"][0]
    tokens = {"root": root, "researcher": _login(api, demo["username"], demo["password"])}
    for username, role in ADMINS.items():
        body = {
            "username": username, "email": f"{username}@example.org", "password": ADMIN_PASSWORD,
            "organization_id": node["organization_id"], "roles": [role_ids[role]],
        }  # fmt: skip
        requests.post(f"{api}/user", headers=_bearer(root), json=body, timeout=30)  # 400 when it exists
        tokens[username] = _login(api, username, ADMIN_PASSWORD)
    answer = requests.post(f"{api}/token/node", json={"api_key": node["api_key"]}, timeout=30)
    tokens["node"] = answer.json()["access_token"]
    task = {
        "name": "fuzz", "image": "harbor2.vantage6.ai/demo/average",
        "collaboration_id": demo["collaboration"]["id"],
        "organizations": [{"id": node["organization_id"], "input": ""}], "databases": [{"label": "default"}],
    }  # fmt: skip
    task = requests.post(f"{api}/task", headers=_bearer(tokens["researcher"]), json=task, timeout=30).json()
    answer = requests.post(
        f"{api}/token/container", headers=_bearer(tokens["node"]),
        json={"task_id": task["id"], "image": task["image"]}, timeout=30,
    )  # fmt: skip
    tokens["container"] = answer.json()["container_token"]
    return tokens


if __name__ == "__main__":
    api_url, demo_file, password = sys.argv[1:4]
    with open(demo_file) as file:
        json.dump(identities(api_url.rstrip("/"), json.load(file), password), sys.stdout)
