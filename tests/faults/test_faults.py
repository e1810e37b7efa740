"""Faults injected for real into the deployment (two replicas behind the proxy, PostgreSQL, RabbitMQ),
with the official client's requests and nodes set up as the official node: what must hold for each."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from urllib.parse import urlsplit

import jwt
import pytest

from tests.conftest import requires_services
from tests.faults.topology import BOUND, Node
from tests.ops import services

# The fault suite is about the deployment on PostgreSQL and RabbitMQ: it runs with the suite on those.
pytestmark = [*services.marks(), requires_services("postgres", "rabbitmq")]


class SlowRequest(threading.Thread):
    """A POST whose body (with its length) arrives in four parts, half a second apart."""

    def __init__(self, base: str, path: str, token: str, body: dict) -> None:
        super().__init__()
        self.address, self.path, self.token = urlsplit(base).netloc, path, token
        self.body = json.dumps(body).encode()
        self.answer: tuple[int, dict] | None = None
        self.start()

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.address, timeout=30)
        connection.putrequest("POST", self.path)
        for name, value in [
            ("Authorization", f"Bearer {self.token}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(self.body))),
        ]:
            connection.putheader(name, value)
        connection.endheaders()
        part = len(self.body) // 4 + 1
        for start in range(0, len(self.body), part):
            connection.send(self.body[start : start + part])
            time.sleep(0.5)
        response = connection.getresponse()
        self.answer = (response.status, json.loads(response.read()))
        connection.close()

    def result(self) -> tuple[int, dict]:
        self.join(10)
        assert self.answer is not None, "no answer"
        return self.answer


def log_since(topology, replica: str, offset: int) -> str:
    return topology.log(replica).read_text()[offset:]


def problems(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if any(word in line for word in ("ERROR", "Traceback", "CRITICAL"))
    ]


def test_sigterm_finishes_requests_and_drops_sockets(topology, nodes):
    token = topology.login()
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)

    # Stop the replica holding some of the nodes' websockets (the proxy picks one for each).
    for victim in topology.replicas:
        offset = len(topology.log(victim).read_text())
        # A request in progress on the victim when the signal comes: its body arrives over 2 s.
        sender = SlowRequest(topology.replicas[victim], "/api/task", token, topology.task_body("in-flight"))
        time.sleep(0.5)
        stopped_in = topology.signal(victim, signal.SIGTERM, within=25)
        status, answer = sender.result()

        assert status == 201, answer
        assert topology.sql("SELECT count(*) FROM run WHERE task_id = %s", answer["id"]) == [
            (len(connected),)
        ]
        assert stopped_in < 10
        assert problems(log_since(topology, victim, offset)) == []
        if any(node.disconnects for node in connected):
            break
        topology.restart(victim)
    dropped = [node for node in connected if node.disconnects]
    assert dropped

    # Its sockets were dropped, not left to time out: the nodes on it are back at once, through the proxy.
    for node in dropped:
        assert node.wait_connected(2, 5), f"node {node.id} did not reconnect"
    for _ in range(5):  # meanwhile the proxy sends everything to the other replica
        response, elapsed = topology.request("GET", "/version")
        assert response.status_code == 200 and elapsed < BOUND
    runs = topology.runs_of([topology.create_task(token, "after-the-stop")])
    for node in connected:
        assert node.wait_runs(node.own(runs), 10) == set(), f"node {node.id}"
    topology.restart(victim)


def test_postgres_restart_is_503_then_recovers_with_nothing_half_written(topology, nodes):
    token = topology.login()
    connected = nodes()
    assert all(node.wait_connected(1, 20) for node in connected)
    # The sockets are idle: a connect's last write follows the node's last notice (a connect cut by
    # the outage is another fault, one the socket layer logs with its traceback).
    time.sleep(1)
    offsets = {name: len(topology.log(name).read_text()) for name in topology.replicas}

    topology.postgres.kill()
    try:
        for base in topology.replicas.values():
            for method, path, kwargs in [
                ("GET", "/user", {}),
                ("POST", "/task", {"json": topology.task_body("during-the-outage")}),
                ("POST", "/organization", {"json": {"name": "during-the-outage"}}),
            ]:
                response, elapsed = topology.request(method, path, token, base=base, **kwargs)
                assert (path, response.status_code) == (path, 503), response.text
                assert response.headers["Content-Type"] == "application/json"
                assert response.json()["msg"]
                assert elapsed < BOUND
    finally:
        topology.postgres.start()

    for base in topology.replicas.values():
        assert topology.health_becomes(200, within=20, base=base).status_code == 200
    assert topology.sql("SELECT count(*) FROM task WHERE name = 'during-the-outage'") == [(0,)]
    assert topology.sql("SELECT count(*) FROM organization WHERE name = 'during-the-outage'") == [(0,)]
    # Sockets stayed or came back: a task made now reaches every node, and its results the researcher.
    client = topology.client()
    task_id = topology.client_task(client, "after-the-outage")
    runs = topology.runs_of([task_id])
    for node in connected:
        (run,) = node.own(runs)
        assert node.wait_runs({run}, 30) == set(), f"node {node.id}"
        assert node.complete(run) == 200
    results = client.wait_for_results(task_id, interval=0.2)
    assert len(results["data"]) == len(connected)
    for name, offset in offsets.items():
        log = log_since(topology, name, offset)
        assert "Database unavailable, /api/task answered 503" in log or name != "replica-1"
        found = [at for at in (log.find("Unhandled error"), log.find("Traceback")) if at >= 0]
        assert not found, log[max(0, min(found) - 500) : min(found) + 4000]  # the whole story


@pytest.fixture
def tiny_tablespace(topology):
    """The table of runs (and its TOAST data) on a filesystem of 2 MiB, a tablespace of its own."""
    mount = topology.folder / "tiny"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        why = f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}"
        if os.environ.get("V6_REQUIRE_SERVICES"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    try:
        os.chown(mount, *_postgres_ids())
        topology.sql(f"CREATE TABLESPACE tiny LOCATION '{mount}'", superuser=True)
        topology.sql("ALTER TABLE run SET TABLESPACE tiny", superuser=True)
        yield mount
        topology.sql("ALTER TABLE run SET TABLESPACE pg_default", superuser=True)
        topology.sql("DROP TABLESPACE tiny", superuser=True)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def test_a_full_disk_is_503_with_a_log_line_and_no_partial_write(topology, tiny_tablespace):
    token = topology.login()
    filler = tiny_tablespace / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=64"], capture_output=True)
    offsets = {name: len(topology.log(name).read_text()) for name in topology.replicas}
    # Random data does not compress: the runs' inputs need new pages, which the full disk refuses.
    large = base64.b64encode(secrets.token_urlsafe(200_000).encode()).decode()

    response, elapsed = topology.request("POST", "/task", token, json=topology.task_body("disk-full", large))

    assert response.status_code == 503, response.text
    assert response.json()["msg"].startswith("The database is unavailable")
    assert elapsed < BOUND
    assert topology.sql("SELECT count(*) FROM task WHERE name = 'disk-full'") == [(0,)]
    logs = "".join(log_since(topology, name, offset) for name, offset in offsets.items())
    answer = "Database unavailable, /api/task answered 503"
    assert f"{answer}: OperationalError, SQLSTATE 53100, could not extend file" in logs
    filler.unlink()
    response, _ = topology.request("POST", "/task", token, json=topology.task_body("disk-full", large))
    assert response.status_code == 201, response.text


def test_a_read_only_database_is_503_with_a_log_line_and_no_partial_write(topology):
    token = topology.login()
    offsets = {name: len(topology.log(name).read_text()) for name in topology.replicas}
    topology.sql("ALTER SYSTEM SET default_transaction_read_only = on", superuser=True)
    topology.sql("SELECT pg_reload_conf()", superuser=True)
    try:
        time.sleep(0.5)  # the server processes read the configuration again
        for base in topology.replicas.values():
            response, elapsed = topology.request(
                "POST", "/task", token, base=base, json=topology.task_body("ro")
            )
            assert response.status_code == 503, response.text
            assert response.json()["msg"].startswith("The database is unavailable")
            assert elapsed < BOUND
            reading, _ = topology.request("GET", "/task", token, base=base)
            assert reading.status_code == 200
    finally:
        topology.sql("ALTER SYSTEM RESET default_transaction_read_only", superuser=True)
        topology.sql("SELECT pg_reload_conf()", superuser=True)
    assert topology.sql("SELECT count(*) FROM task WHERE name = 'ro'") == [(0,)]
    logs = "".join(log_since(topology, name, offset) for name, offset in offsets.items())
    answer = "Database unavailable, /api/task answered 503"
    assert logs.count(f"{answer}: InternalError, SQLSTATE 25006, cannot execute") == 2
    time.sleep(0.5)
    assert topology.request("POST", "/task", token, json=topology.task_body("ro"))[0].status_code == 201


def test_a_node_back_an_hour_later_gets_its_runs_by_sync_and_patches_them(topology, nodes):
    client = topology.client()
    node = nodes()[0]
    assert node.wait_connected(1, 20)
    first = topology.client_task(client, "started-before-leaving")
    (run,) = node.own(topology.runs_of([first]))
    assert node.wait_runs({run}, 10) == set()
    an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 3600))
    response, _ = topology.request("PATCH", f"/run/{run}", node.access, json={"started_at": an_hour_ago})
    assert response.status_code == 200
    node.close()  # gone mid-run
    second = topology.client_task(client, "made-while-away")

    # An hour passes: the node's access token expired, the server saw it last an hour ago.
    claims = jwt.decode(node.access, options={"verify_signature": False})
    claims.update(iat=claims["iat"] - 3600, exp=int(time.time()) - 60)
    secret = (topology.state / "secrets" / "V6_JWT_SECRET_KEY").read_text().strip()
    topology.sql(
        "UPDATE authenticatable SET last_seen = now() - interval '1 hour', status = 'offline' WHERE id = %s",
        node.id,
    )
    back = Node(topology, node.info, tokens=(jwt.encode(claims, secret, algorithm="HS256"), node.refresh))
    try:
        # expired_token -> refresh -> connect again -> sync lists both open runs.
        runs = node.own(topology.runs_of([first, second]))
        assert back.wait_runs(runs, 20) == set()
        assert back.access != node.access
        for run_id in sorted(runs):
            assert back.complete(run_id, started=run_id == run) == 200
    finally:
        back.close()
    rows = topology.sql(
        "SELECT id, started_at < now() - interval '50 minutes' FROM run WHERE id = ANY(%s)", list(runs)
    )
    assert dict(rows) == {run_id: run_id == run for run_id in runs}
    assert [client.run.get(run_id)["status"] for run_id in sorted(runs)] == ["completed", "completed"]


def test_a_rolling_restart_fails_no_request(topology):
    token = topology.login()
    answers: list[int] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            response, _ = topology.request("POST", "/task", token, json=topology.task_body("rolling"))
            answers.append(response.status_code)
            answers.append(topology.request("GET", "/task", token)[0].status_code)

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        for replica in topology.replicas:  # one after the other, each back before the next stops
            topology.signal(replica, signal.SIGTERM)
            topology.restart(replica)
        time.sleep(1)
    finally:
        done.set()
        asking.join(30)
    assert len(answers) > 20
    assert set(answers) == {200, 201}


def test_a_stopping_replica_does_not_cut_a_kept_alive_connection_under_a_request(topology):
    """A proxy keeps connections to a replica alive and may send the next request on one at any time:
    while the replica stops it answers that request and closes the connection after it (``Connection:
    close``) instead of closing it under the request (a lost POST, answered 502 by the proxy)."""
    token = topology.login()
    victim, base = next(iter(topology.replicas.items()))
    proxy = http.client.HTTPConnection(urlsplit(base).netloc, timeout=10)
    proxy.request("GET", "/api/version")
    assert proxy.getresponse().read() and proxy.sock is not None  # kept alive
    pid = topology.pid(victim)
    os.kill(pid, signal.SIGTERM)
    time.sleep(1)  # the replica has no request in progress: it stops as soon as it may

    body = json.dumps(topology.task_body("on-a-kept-connection"))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    proxy.request("POST", "/api/task", body, headers)
    response = proxy.getresponse()

    assert response.status == 201, response.read()
    assert response.getheader("Connection") == "close"
    response.read()
    proxy.close()
    assert topology.sql("SELECT count(*) FROM task WHERE name = 'on-a-kept-connection'") == [(1,)]
    deadline = time.monotonic() + 5
    while topology.alive(victim) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not topology.alive(victim)
    topology.restart(victim)
