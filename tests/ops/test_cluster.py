"""The scaled-out deployment end to end: scripts/cluster.sh starts two replicas and nginx on the
PostgreSQL and RabbitMQ of the test run; clients go through the proxy, or to one replica each."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
import requests

from tests.conftest import requires_services
from tests.ops import services
from tests.realtime.helpers import NodeSocket
from tests.realtime.live import ROOT, free_port, sql_apart

pytestmark = [pytest.mark.live, services.ONE_DEPLOYMENT_AT_A_TIME, requires_services("postgres", "rabbitmq")]

SCRIPT = str(ROOT / "scripts" / "cluster.sh")
ROOT_PASSWORD = "Root-pass-1"


@dataclass
class Cluster:
    url: str
    replicas: list[str]
    folder: Path
    demo: dict

    @property
    def api(self) -> str:
        return f"{self.url}/api"


def _admin(url: str, sql: str) -> None:
    sql_apart(sql, dsn=url)


def _run(argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    """Running: neither gone nor exited and waiting to be reaped by init (a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster on a database of its own (on the test run's PostgreSQL server) and its RabbitMQ."""
    server_url = os.environ["V6_DATABASE_URL"]
    name = f"v6_cluster_{uuid.uuid4().hex[:10]}"
    _admin(server_url, f'CREATE DATABASE "{name}"')
    folder = tmp_path_factory.mktemp("cluster")
    env = {key: value for key, value in os.environ.items() if not key.startswith("V6_")} | {
        "V6_DATABASE_URL": urlsplit(server_url)._replace(path=f"/{name}").geturl(),
        "V6_RABBITMQ_URI": os.environ["V6_RABBITMQ_URI"],
        "V6_CLUSTER_DIR": str(folder),
        "V6_CLUSTER_PORT": str(free_port()),
        "V6_ROOT_PASSWORD": ROOT_PASSWORD,
        "V6_LOG_FORMAT": "json",
        "V6_METRICS": "1",
        "V6_BCRYPT_ROUNDS": "4",
    }
    try:
        # Generous: a machine without nginx installs it first.
        started = _run([SCRIPT, "start"], env, timeout=600)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        status = _run([SCRIPT, "status"], env, timeout=30)
        assert status.returncode == 0, status.stdout
        replicas = next(line for line in status.stdout.splitlines() if line.startswith("replicas:")).split()[
            1:
        ]
        demo = _run([sys.executable, "manage.py", "demo", "--json"], env, timeout=120)
        assert demo.returncode == 0, demo.stderr
        yield Cluster(url, replicas, folder, json.loads(demo.stdout))
    finally:
        pids = [int(p.read_text()) for p in folder.glob("*.pid") if p.read_text().strip()]
        stopped = _run([SCRIPT, "stop"], env, timeout=120)
        _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert stopped.returncode == 0, stopped.stderr
    assert len(pids) == 3  # nginx and two replicas
    assert not [pid for pid in pids if _alive(pid)]
    assert _run([SCRIPT, "status"], env, timeout=30).returncode == 1


def login(api: str, username: str, password: str) -> dict:
    response = requests.post(
        f"{api}/token/user", json={"username": username, "password": password}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def node_token(api: str, api_key: str) -> str:
    response = requests.post(f"{api}/token/node", json={"api_key": api_key}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def create_task(api: str, headers: dict, demo: dict) -> int:
    plain = base64.b64encode(json.dumps({"method": "m"}).encode()).decode()
    body = {
        "name": "t",
        "image": "some/image",
        "collaboration_id": demo["collaboration"]["id"],
        "organizations": [{"id": node["organization_id"], "input": plain} for node in demo["nodes"]],
        "databases": [{"label": "default"}],
    }
    response = requests.post(f"{api}/task", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_two_replicas_behind_the_proxy(cluster):
    assert len(cluster.replicas) == 2
    assert len({urlsplit(url).port for url in [cluster.url, *cluster.replicas]}) == 3
    for url in [cluster.url, *cluster.replicas]:
        assert requests.get(f"{url}/api/version", timeout=10).status_code == 200
    # root was created on the first start with V6_ROOT_PASSWORD
    login(cluster.api, "root", ROOT_PASSWORD)


def test_a_task_created_through_one_replica_is_seen_through_the_other(cluster):
    headers = login(cluster.api, cluster.demo["username"], cluster.demo["password"])  # via the proxy
    first, second = cluster.replicas

    task_id = create_task(f"{first}/api", headers, cluster.demo)

    seen = requests.get(f"{second}/api/task/{task_id}", headers=headers, timeout=10)
    assert seen.status_code == 200, seen.text
    assert seen.json()["id"] == task_id
    runs = requests.get(f"{cluster.api}/run?task_id={task_id}", headers=headers, timeout=10).json()["data"]
    assert len(runs) == len(cluster.demo["nodes"])


def test_a_node_socket_through_the_proxy_gets_new_task_from_a_rest_call(cluster):
    node = cluster.demo["nodes"][0]
    socket = NodeSocket(cluster.url, node_token(cluster.api, node["api_key"]))
    try:
        socket.wait_for("sync", timeout=20)
        room = f"collaboration_{cluster.demo['collaboration']['id']}_organization_{node['organization_id']}"
        socket.wait_for("message", timeout=20, where=lambda text: text.endswith(f"joined room {room}"))
        assert socket.transport == "websocket"  # the upgrade passed the proxy

        # Each replica counts the sessions it holds: the node's is on one of them.
        line = 'vantage6_sockets_connected{transport="websocket",kind="node"} 1'
        held = [
            line in requests.get(f"{replica}/api/metrics", timeout=10).text for replica in cluster.replicas
        ]
        assert sorted(held) == [False, True]

        researcher = login(cluster.api, cluster.demo["username"], cluster.demo["password"])
        for replica in cluster.replicas:  # whichever replica serves the REST call
            task_id = create_task(f"{replica}/api", researcher, cluster.demo)
            assert socket.wait_for("new_task", timeout=20, where=lambda data, t=task_id: data["id"] == t)
    finally:
        socket.close()


def test_a_node_with_a_token_of_another_key_is_told_so_through_the_proxy(cluster):
    node = cluster.demo["nodes"][0]
    claims = jwt.decode(node_token(cluster.api, node["api_key"]), options={"verify_signature": False})
    foreign = jwt.encode(claims, "another-secret-of-more-than-thirty-two-bytes", algorithm="HS256")

    # Its session is in the memory of the replica of the handshake; the upgrade lands on the other one.
    socket = NodeSocket(cluster.url, foreign)
    try:
        socket.wait_for("invalid_token", timeout=20)
    finally:
        socket.close()


def test_each_request_is_logged_once_as_a_json_line(cluster):
    marker = f"/api/marker-{uuid.uuid4().hex}"
    for _ in range(4):
        assert requests.get(f"{cluster.url}{marker}", timeout=10).status_code == 404

    entries = []
    for log in sorted(cluster.folder.glob("replica-*.log")):
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        entries.append([json.loads(line) for line in lines])  # JSON only: daphne adds no lines of its own
    hits = [[e for e in replica if e.get("path") == marker] for replica in entries]
    assert sum(len(h) for h in hits) == 4
    assert all(hits), "round robin: both replicas served some"
    assert {(e["method"], e["status"], e["principal"]) for h in hits for e in h} == {
        ("GET", 404, "anonymous")
    }


def test_behind_the_proxy_failed_logins_count_per_client(cluster):
    """The replicas trust the proxy's X-Forwarded-For (the proxy connects from loopback, as this test
    does to one replica), so one client's guesses do not lock every client out."""
    replica = cluster.replicas[0]

    def guess(client: str) -> int:
        body = {"username": "nobody", "password": "wrong"}
        headers = {"X-Forwarded-For": client}
        return requests.post(f"{replica}/api/token/user", json=body, headers=headers, timeout=10).status_code

    assert [guess("198.51.100.1") for _ in range(20)] == [401] * 20  # V6_LOGIN_FAILURES_PER_MINUTE
    assert guess("198.51.100.1") == 429
    assert guess("198.51.100.2") == 401
