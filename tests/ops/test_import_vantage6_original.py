"""The database of a real vantage6-server 4.15.2 (with two-factor authentication), filled through its
REST API with the official client and a node's calls, taken over by ``import_vantage6``: every user
logs in with the old password and two-factor app, every node with its old API key, and the lists
answer as the old server answered.

The old server is the one ``bench/setup_original.sh install`` puts in ``bench/.original``; without it
this test is skipped, unless ``V6_REQUIRE_ORIGINAL`` is set (then it fails).
"""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg2
import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection

from accounts import totp
from nodes.models import Node, api_key_digest
from scripts.free_port import free_port
from tasks.models import AlgorithmPort
from tests.conftest import requires_services
from vantage6.client import Client
from vantage6.common import Singleton
from vantage6.common.encryption import DummyCryptor, RSACryptor

BASE_DIR = Path(django_settings.BASE_DIR)
ORIGINAL_VENV = BASE_DIR / "bench" / ".original" / "venv"
SETUP = BASE_DIR / "bench" / "setup_original.sh"
ROOT_PASSWORD = "root"  # what vantage6 gives root on its first start
PASSWORD = "Old-password-123!"
LISTS = ("organization", "collaboration", "user", "role", "rule", "node", "task", "run", "result", "study")

if not (ORIGINAL_VENV / "bin" / "uwsgi").exists():
    if os.environ.get("V6_REQUIRE_ORIGINAL"):
        pytest.fail("V6_REQUIRE_ORIGINAL is set but bench/.original is not installed", pytrace=False)
    pytest.skip(
        "vantage6-server 4.15.2 is not installed (bench/setup_original.sh install)", allow_module_level=True
    )

pytestmark = pytest.mark.django_db


@contextmanager
def postgres_source():
    """A new PostgreSQL database for the old server, next to the test database; its URL."""
    params = connection.settings_dict
    name = f"{params['NAME']}_v6source"
    admin = psycopg2.connect(
        host=params["HOST"], port=params["PORT"], user=params["USER"], password=params["PASSWORD"],
        dbname="postgres",
    )  # fmt: skip
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{params['USER']}:{params['PASSWORD']}@{params['HOST']}:{params['PORT']}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_services("postgres"))])
def original(request, tmp_path):
    """A vantage6-server 4.15.2 of its own (folder, port, database on SQLite or PostgreSQL): its API
    URL and its database URL."""
    folder = tmp_path / "original"
    folder.mkdir()
    (folder / "venv").symlink_to(ORIGINAL_VENV)
    environment = {
        **os.environ, "ORIG_DIR": str(folder), "ORIG_PORT": str(free_port()),
        "ORIG_EXTRA_CONFIG": "two_factor_auth: true",
    }  # fmt: skip
    with ExitStack() as stack:
        if request.param == "postgresql":
            environment["ORIG_DB_URI"] = stack.enter_context(postgres_source())
        else:
            environment["ORIG_DB_URI"] = f"sqlite:///{folder / 'data' / 'original.sqlite'}"
        started = subprocess.run(
            [str(SETUP), "start"], env=environment, capture_output=True, text=True, timeout=180
        )
        assert started.returncode == 0, started.stdout + started.stderr
        stack.callback(subprocess.run, [str(SETUP), "stop"], env=environment, capture_output=True, timeout=60)
        yield f"http://127.0.0.1:{environment['ORIG_PORT']}/api", environment["ORIG_DB_URI"]


class Rest:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, f"{self.base}/{path}", headers=self.headers, timeout=30, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()


def old_login(base: str, username: str, password: str, otp: dict[str, str]) -> str:
    """An access token of the old server, which asks for two-factor codes: a user's first login sets
    up the secret (kept in ``otp``)."""

    def post(**extra) -> dict:
        body = {"username": username, "password": password, **extra}
        return requests.post(f"{base}/token/user", json=body, timeout=30).json()

    if "otp_secret" in (first := post()):
        otp[username] = first["otp_secret"]
    answer = post(mfa_code=totp.totp(otp[username]))
    assert "access_token" in answer, answer
    return answer["access_token"]


def node_rest(base: str, api_key: str) -> Rest:
    response = requests.post(f"{base}/token/node", json={"api_key": api_key}, timeout=30)
    assert response.status_code == 200, response.text
    return Rest(base, response.json()["access_token"])


def fresh_cryptor(path: Path) -> RSACryptor:
    """The client's cryptors are process-wide singletons; each organization here needs its own."""
    Singleton._instances.pop(RSACryptor, None)
    return RSACryptor(path)


def seed(base: str, tmp_path: Path) -> dict:
    """Organizations, a plain and an encrypted collaboration, users with built-in, custom and extra
    rights, nodes, and tasks with a subtask and completed, failed and open runs; the secrets."""
    host, port = base.rsplit(":", 1)
    client = Client(host, int(port.split("/")[0]), "/api", log_level="error")
    otp: dict[str, str] = {}
    old_login(base, "root", ROOT_PASSWORD, otp)
    client.authenticate("root", ROOT_PASSWORD, mfa_code=totp.totp(otp["root"]))
    root = Rest(base, client.token)
    orgs = {
        name: client.organization.create(
            name=name,
            address1="Street 1",
            address2="",
            zipcode="1234",
            country="NL",
            domain=f"{name}.example",
        )["id"]
        for name in ("Hospital A", "Hospital B", "Hospital C")
    }
    a, b, c = orgs.values()
    # Root's organization is a member too: it creates the tasks.
    mine = client.whoami.organization_id
    plain = client.collaboration.create(name="Plain", organizations=[a, b, mine], encrypted=False)["id"]
    secret = client.collaboration.create(name="Secret", organizations=[a, c, mine], encrypted=True)["id"]

    rules = {
        (r["name"], r["scope"], r["operation"]): r["id"] for r in root("get", "rule?per_page=200")["data"]
    }
    builtin = {r["name"]: r["id"] for r in root("get", "role?per_page=100")["data"]}
    auditors = client.role.create(
        name="Auditors", description="reads tasks", organization=a,
        rules=[rules[("task", "ORGANIZATION", "VIEW")], rules[("run", "ORGANIZATION", "VIEW")]],
    )["id"]  # fmt: skip
    passwords = {"root": ROOT_PASSWORD}
    for username, org, roles, extra in [
        ("alice", a, ["Researcher", "Organization Admin"], []),
        ("bob", b, ["Viewer"], [rules[("node", "GLOBAL", "VIEW")]]),
        ("carol", a, [auditors], []),
    ]:
        client.user.create(
            username=username, firstname=username.title(), lastname="Old", password=PASSWORD,
            email=f"{username}@example.org", organization=org,
            roles=[builtin.get(role, role) for role in roles], rules=extra,
        )  # fmt: skip
        passwords[username] = PASSWORD
        old_login(base, username, PASSWORD, otp)

    node_keys = {}
    for org, collab in ((a, plain), (b, plain), (a, secret), (c, secret)):
        node = client.node.create(collaboration=collab, organization=org)
        node_keys[node["id"]] = node["api_key"]
    nodes = {
        (n["organization"]["id"], n["collaboration"]["id"]): n["id"] for n in root("get", "node")["data"]
    }

    # Each organization's node shares its public key, as a node does at start-up.
    keys = {}
    for org, collab in ((a, plain), (b, plain), (c, secret)):
        RSACryptor.create_new_rsa_key(tmp_path / f"{org}.pem")
        keys[org] = fresh_cryptor(tmp_path / f"{org}.pem")
        node = node_rest(base, node_keys[nodes[(org, collab)]])
        node("patch", f"organization/{org}", json={"public_key": keys[org].public_key_str})

    Singleton._instances.pop(DummyCryptor, None)
    client.setup_encryption(None)
    task = client.task.create(
        collaboration=plain, organizations=[a, b], name="average", image="example/average",
        description="plain", input_={"method": "average"}, databases=[{"label": "default"}],
    )  # fmt: skip
    node_a = node_rest(base, node_keys[nodes[(a, plain)]])
    node_b = node_rest(base, node_keys[nodes[(b, plain)]])
    assert "id" in task, task
    run_a = node_a("get", f"run?task_id={task['id']}&organization_id={a}")["data"][0]
    grant = node_a("post", "token/container", json={"task_id": task["id"], "image": "example/average"})
    container = Rest(base, grant["container_token"])
    subtask = container("post", "task", json={
        "name": "partial", "image": "example/average", "collaboration_id": plain,
        "organizations": [{"id": b, "input": "eyJtZXRob2QiOiAicGFydGlhbCJ9"}],
        "databases": [{"label": "default"}],
    })  # fmt: skip
    node_a("post", "port", json={"port": 8888, "run_id": run_a["id"], "label": "jupyter"})
    node_a(
        "patch",
        f"run/{run_a['id']}",
        json={"status": "active", "started_at": "2025-01-01T10:00:00.000001+00:00"},
    )
    node_a("patch", f"run/{run_a['id']}", json={
        "status": "completed", "result": "eyJhdmVyYWdlIjogNDJ9", "log": "done",
        "finished_at": "2025-01-01T10:01:00.000001+00:00",
    })  # fmt: skip
    run_b = node_b("get", f"run?task_id={task['id']}&organization_id={b}")["data"][0]
    node_b(
        "patch",
        f"run/{run_b['id']}",
        json={"status": "crashed", "log": "Traceback", "finished_at": "2025-01-01T10:02:00.000001+00:00"},
    )
    sub_run = node_b("get", f"run?task_id={subtask['id']}")["data"][0]
    node_b(
        "patch",
        f"run/{sub_run['id']}",
        json={
            "status": "completed",
            "result": "eyJzdW0iOiA0fQ==",
            "finished_at": "2025-01-01T10:03:00.000001+00:00",
        },
    )

    # Root's organization gets a key too: results are encrypted for the initiating organization.
    RSACryptor.create_new_rsa_key(tmp_path / "root.pem")
    Singleton._instances.pop(RSACryptor, None)
    client.setup_encryption(str(tmp_path / "root.pem"))
    encrypted = client.task.create(
        collaboration=secret, organizations=[a, c], name="secret average", image="example/average",
        description="encrypted", input_={"method": "average"},
    )  # fmt: skip
    node_sa = node_rest(base, node_keys[nodes[(a, secret)]])
    run_sa = node_sa("get", f"run?task_id={encrypted['id']}&organization_id={a}")["data"][0]
    root_org = root("get", f"organization/{mine}")
    result = keys[a].encrypt_bytes_to_str(json.dumps({"average": 7}).encode(), root_org["public_key"])
    node_sa(
        "patch",
        f"run/{run_sa['id']}",
        json={"status": "completed", "result": result, "finished_at": "2025-01-01T11:00:00.000001+00:00"},
    )
    return {"passwords": passwords, "otp": otp, "node_keys": node_keys, "encrypted_task": encrypted["id"]}


def lists(get) -> dict[str, list[dict]]:
    """Every list of LISTS, as root sees it, by id."""
    out = {}
    for resource in LISTS:
        body = get(f"{resource}?per_page=500")
        out[resource] = sorted(body["data"], key=lambda item: item["id"])
    return out


# Texts this server keeps as "" where vantage6 left them null (root's organization and name).
EMPTY_AS_NULL = {
    "organization": {"domain", "address1", "address2", "zipcode", "country"},
    "user": {"firstname", "lastname"},
}


def same(resource: str, key: str, old: object, new: object) -> bool:
    """Equal, but for what may differ: the order of the methods of a reference (vantage6's is that of
    a set), two-factor secrets (not shown here), a last_seen moved on by the logins above, and
    EMPTY_AS_NULL."""
    if isinstance(old, dict) and isinstance(new, dict) and "methods" in old:
        return {**old, "methods": sorted(old["methods"])} == {**new, "methods": sorted(new["methods"])}
    if resource == "user" and key == "otp_secret":
        return new is None  # vantage6 shows two-factor secrets; this server never does
    if key == "last_seen" and old and new:
        return new >= old
    if key in EMPTY_AS_NULL.get(resource, ()) and old is None:
        return new in (None, "")
    return old == new


def test_a_real_vantage6_database_is_taken_over(original, manage, api, tmp_path, settings):
    base, database_url = original
    seeded = seed(base, tmp_path)
    old = Rest(base, old_login(base, "root", ROOT_PASSWORD, seeded["otp"]))
    before = lists(lambda path: old("get", path))

    outcome = manage("import_vantage6", database_url)
    assert outcome.code == 0, outcome.err

    # Every user: the old password, and a code of the two-factor app set up with the old server.
    settings.TWO_FACTOR_AUTH = True
    tokens = {}
    for username, password in seeded["passwords"].items():
        body = {"username": username, "password": password}
        ask = api.post("/api/token/user", body, format="json")
        assert ask.json() == {"msg": "Please include your two-factor authentication code"}, username
        code = totp.totp(seeded["otp"][username])
        response = api.post("/api/token/user", {**body, "mfa_code": code}, format="json")
        assert response.status_code == 200, (username, response.content)
        tokens[username] = response.json()["access_token"]
    for pk, key in seeded["node_keys"].items():
        for _ in range(2):  # by its bcrypt hash, then by its digest
            response = api.post("/api/token/node", {"api_key": key}, format="json")
            assert response.status_code == 200, response.content
            assert response.json()["node_url"] == f"/api/node/{pk}"
        assert Node.objects.get(pk=pk).api_key_hash == api_key_digest(key)

    headers = {"HTTP_AUTHORIZATION": f"Bearer {tokens['root']}"}
    after = lists(lambda path: api.get(f"/api/{path}", **headers).json())
    # This server's own rules (the audit trail's) come after the 86 of vantage6.
    own_rules = [rule for rule in after["rule"] if rule["id"] > len(before["rule"])]
    assert {rule["name"] for rule in own_rules} == {"audit"}
    after["rule"] = [rule for rule in after["rule"] if rule not in own_rules]
    differences = [
        (resource, old.get("id"), key, old.get(key), new.get(key))
        for resource in LISTS
        for old, new in zip(before[resource], after[resource], strict=True)
        for key in sorted(set(old) | set(new))
        if not same(resource, key, old.get(key), new.get(key))
    ]
    assert [(r, len(before[r])) for r in LISTS] == [(r, len(after[r])) for r in LISTS]
    # The encrypted result still opens with the initiating organization's private key.
    result = api.get(f"/api/result?task_id={seeded['encrypted_task']}", **headers).json()["data"]
    done = next(run["result"] for run in result if run["result"])
    assert json.loads(fresh_cryptor(tmp_path / "root.pem").decrypt(done).decode()) == {"average": 7}
    assert list(AlgorithmPort.objects.values_list("port", "label")) == [(8888, "jupyter")]
    assert differences == [], "\n".join(map(repr, differences))
