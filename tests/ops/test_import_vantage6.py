"""``manage.py import_vantage6``: a small vantage6 4.x database (tables and columns as vantage6 names
them, bcrypt hashes as it writes them) is taken over; its users and nodes log in with their old
passwords and keys and see what they saw. Refused sources and targets change nothing."""

from __future__ import annotations

import base64
import sqlite3
import uuid

import bcrypt
import pytest

from accounts import totp
from accounts.models import AuditEntry, Authenticatable, Role, User
from collaborations.models import AlgorithmStore, Collaboration, Organization
from nodes.models import Node, api_key_digest
from tasks.models import Run, Task
from tests.factories import make_node, make_org

pytestmark = pytest.mark.django_db

# The 4.x schema (data-model.md): no constraints but the primary keys, as vantage6 creates it.
DDL = """
CREATE TABLE authenticatable (id INTEGER PRIMARY KEY, type VARCHAR(50), ip VARCHAR, last_seen DATETIME,
    status VARCHAR);
CREATE TABLE rule (id INTEGER PRIMARY KEY, name TEXT, operation VARCHAR(7), scope VARCHAR(13),
    description VARCHAR);
CREATE TABLE organization (id INTEGER PRIMARY KEY, name VARCHAR, domain VARCHAR, address1 VARCHAR,
    address2 VARCHAR, zipcode VARCHAR, country VARCHAR, _public_key BLOB);
CREATE TABLE collaboration (id INTEGER PRIMARY KEY, name VARCHAR, encrypted BOOLEAN);
CREATE TABLE user (id INTEGER PRIMARY KEY, username VARCHAR, password VARCHAR, firstname VARCHAR,
    lastname VARCHAR, email VARCHAR, organization_id INTEGER, failed_login_attempts INTEGER,
    last_login_attempt DATETIME, otp_secret VARCHAR(32), last_email_failed_login_sent DATETIME,
    last_email_recover_password_sent DATETIME);
CREATE TABLE node (id INTEGER PRIMARY KEY, name VARCHAR, api_key VARCHAR, collaboration_id INTEGER,
    organization_id INTEGER);
CREATE TABLE "Member" (organization_id INTEGER, collaboration_id INTEGER);
CREATE TABLE role (id INTEGER PRIMARY KEY, name TEXT, description TEXT, organization_id INTEGER,
    is_default_role BOOLEAN);
CREATE TABLE algorithmstore (id INTEGER PRIMARY KEY, name VARCHAR, url VARCHAR, collaboration_id INTEGER);
CREATE TABLE study (id INTEGER PRIMARY KEY, name VARCHAR, collaboration_id INTEGER);
CREATE TABLE role_rule_association (role_id INTEGER, rule_id INTEGER);
CREATE TABLE "StudyMember" (organization_id INTEGER, study_id INTEGER);
CREATE TABLE nodeconfig (id INTEGER PRIMARY KEY, node_id INTEGER, "key" VARCHAR, value VARCHAR);
CREATE TABLE task (id INTEGER PRIMARY KEY, name VARCHAR, description VARCHAR, image VARCHAR,
    collaboration_id INTEGER, study_id INTEGER, job_id INTEGER, parent_id INTEGER, init_org_id INTEGER,
    init_user_id INTEGER, created_at DATETIME, algorithm_store_id INTEGER);
CREATE TABLE "Permission" (role_id INTEGER, user_id INTEGER);
CREATE TABLE "UserPermission" (rule_id INTEGER, user_id INTEGER);
CREATE TABLE run (id INTEGER PRIMARY KEY, input TEXT, task_id INTEGER, organization_id INTEGER,
    result TEXT, assigned_at DATETIME, started_at DATETIME, finished_at DATETIME, status TEXT, log TEXT,
    cleanup_at DATETIME, blob_storage_used BOOLEAN);
CREATE TABLE taskdatabase (id INTEGER PRIMARY KEY, task_id INTEGER, "database" VARCHAR,
    parameters VARCHAR);
CREATE TABLE algorithmport (id INTEGER PRIMARY KEY, port INTEGER, run_id INTEGER, label VARCHAR);
"""
PASSWORDS = {"root": "Old-root-pass-1", "alice": "Alice-pass-123", "bob": "Bob-pass-12345"}
NODE_KEYS = {3: str(uuid.uuid4()), 4: str(uuid.uuid4())}
OTP_SECRET = totp.new_secret()
PEM_BYTES = b"-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----\n"
T0 = "2025-03-01 10:00:00.123456"


def _hash(secret: str) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4)).decode()


ROWS = {
    "rule": [
        (1, "node", "VIEW", "GLOBAL", "view any node"),
        (2, "user", "VIEW", "ORGANIZATION", "view users of your organization"),
        (3, "task", "CREATE", "COLLABORATION", "create a task"),
        (4, "gizmo", "VIEW", "GLOBAL", "a rule this server does not have"),
    ],
    "organization": [
        (1, "root", None, None, None, None, None, None),
        (2, "Hospital A", "a.example", "Street 1", None, "1234", "NL", PEM_BYTES),
        (3, "Hospital B", "", "", "", "", "", None),
    ],
    "collaboration": [(1, "Plain", 0), (2, "Secret", 1)],
    "Member": [(2, 1), (3, 1), (2, 2), (3, 2), (2, 1)],  # vantage6 allows a duplicate
    "study": [(1, "Study one", 1)],
    "StudyMember": [(2, 1)],
    "algorithmstore": [
        (1, "Community store", "https://store.example/api", None),
        (2, "Own store", "https://own.example/api", 1),
    ],
    "role": [
        (1, "Root", "Super role", None, 1),
        (4, "Viewer", "old description", None, 1),
        (8, "Analysts", "custom", 2, 0),
    ],
    "role_rule_association": [(1, 1), (8, 2), (8, 3), (8, 4)],
    "authenticatable": [
        (1, "user", None, None, None),
        (2, "user", None, T0, "online"),
        (3, "node", "10.0.0.3", T0, "online"),
        (4, "node", None, None, "offline"),
        (5, "user", None, None, None),
    ],
    "user": [
        (1, "root", "<root>", None, None, "root@domain.ext", 1, 0, None, None, None, None),
        (2, "alice", "<alice>", "Alice", "A", "alice@a.example", 2, 0, None, OTP_SECRET, None, None),
        (5, "bob", "<bob>", "Bob", "B", "bob@b.example", 3, 2, T0, None, None, None),
    ],
    "Permission": [(1, 1), (8, 2), (4, 5)],
    "UserPermission": [(1, 2)],
    "node": [
        (3, "Hospital A - Plain Node", "<3>", 1, 2),
        (4, "Hospital B - Plain Node", "<4>", 1, 3),
    ],
    "nodeconfig": [(1, 3, "allowed_users", "2"), (2, None, "orphan", "x")],
    "task": [
        (10, "average", "", "demo/average", 1, 1, 1, None, 2, 2, T0, 1),
        (11, "subtask", "", "demo/average", 1, None, 1, 10, 2, 2, T0, None),
        (12, "gone", "", "demo/average", 99, None, 2, None, 2, 2, T0, None),  # its collaboration is gone
    ],
    "taskdatabase": [(1, 10, "default", '{"query":"x"}')],
    "run": [
        (20, "aW5wdXQ=", 10, 2, "cmVzdWx0", T0, T0, T0, "completed", "all fine", None, 0),
        (21, "aW5wdXQ=", 10, 3, None, T0, T0, T0, "crashed", "Traceback", None, 0),
        (22, "aW5wdXQ=", 11, 2, None, T0, None, None, "pending", None, None, 0),
        (23, "aW5wdXQ=", None, 2, None, T0, None, None, "pending", None, None, 0),  # task deleted
    ],
    "algorithmport": [(1, 8888, 22, "jupyter")],
}


def _secret(value: object) -> object:
    """``<name>`` placeholders become bcrypt hashes, as vantage6 stores passwords and node keys."""
    if isinstance(value, str) and value.startswith("<"):
        name = value[1:-1]
        return _hash(PASSWORDS[name] if name in PASSWORDS else NODE_KEYS[int(name)])
    return value


def build_source(path, rows: dict | None = None, extra_sql: str = "") -> str:
    connection = sqlite3.connect(path)
    connection.executescript(DDL)
    for table, values in (rows or ROWS).items():
        marks = ", ".join("?" * len(values[0]))
        connection.executemany(
            f'INSERT INTO "{table}" VALUES ({marks})', [tuple(map(_secret, v)) for v in values]
        )
    connection.executescript(extra_sql)
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


@pytest.fixture
def source(tmp_path) -> str:
    return build_source(tmp_path / "vantage6.sqlite")


def login(api, username: str, password: str, **extra):
    return api.post("/api/token/user", {"username": username, "password": password, **extra}, format="json")


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(item["id"] for item in response.json()["data"])


def state() -> tuple:
    return tuple(m.objects.count() for m in (Organization, Authenticatable, Role, Task, Run, AuditEntry))


def test_users_and_nodes_log_in_as_before_and_see_the_same_data(manage, api, source, settings):
    outcome = manage("import_vantage6", source)

    assert outcome.code == 0, outcome.err
    assert "  task: 2" in outcome.out and "  run: 3" in outcome.out
    assert "left out, run: its task or organization was deleted: 1" in outcome.out
    assert "left out, task: its collaboration or organization was deleted: 1" in outcome.out
    assert "left out, unknown rule: gizmo GLOBAL VIEW" in outcome.out

    # Old passwords, the old two-factor secret.
    root = login(api, "root", PASSWORDS["root"])
    assert root.status_code == 200, root.content
    settings.TWO_FACTOR_AUTH = True
    ask = login(api, "alice", PASSWORDS["alice"])
    assert ask.json() == {"msg": "Please include your two-factor authentication code"}
    assert "access_token" in login(api, "alice", PASSWORDS["alice"], mfa_code=totp.totp(OTP_SECRET)).json()
    settings.TWO_FACTOR_AUTH = False
    assert login(api, "bob", "wrong").status_code == 401
    assert login(api, "bob", PASSWORDS["bob"]).status_code == 200
    # Old node keys: bcrypt once, the digest from then on.
    for pk, key in NODE_KEYS.items():
        response = api.post("/api/token/node", {"api_key": key}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["node_url"] == f"/api/node/{pk}"
        assert Node.objects.get(pk=pk).api_key_hash == api_key_digest(key)

    headers = {"HTTP_AUTHORIZATION": f"Bearer {root.json()['access_token']}"}
    assert ids(api.get("/api/organization", **headers)) == [1, 2, 3]
    assert (
        api.get("/api/organization/2", **headers).json()["public_key"] == base64.b64encode(PEM_BYTES).decode()
    )
    assert ids(api.get("/api/collaboration", **headers)) == [1, 2]
    assert [c.encrypted for c in Collaboration.objects.order_by("pk")] == [False, True]
    assert ids(api.get("/api/user", **headers)) == [1, 2, 5]
    assert ids(api.get("/api/node", **headers)) == [3, 4]
    assert {n["status"] for n in api.get("/api/node", **headers).json()["data"]} == {"offline"}
    assert ids(api.get("/api/task", **headers)) == [10, 11]
    assert ids(api.get("/api/run", **headers)) == [20, 21, 22]
    assert ids(api.get("/api/study", **headers)) == [1]
    task = api.get("/api/task/11", **headers).json()
    assert (task["parent"]["id"], task["job_id"]) == (10, 1)
    assert api.get("/api/task/10", **headers).json()["status"] == "crashed"
    run = api.get("/api/run/20", **headers).json()
    assert (run["input"], run["log"], run["status"]) == ("aW5wdXQ=", "all fine", "completed")
    assert api.get("/api/result/20", **headers).json()["result"] == "cmVzdWx0"
    # Roles keep their ids; the custom one keeps its rules (those this server has), the built-in ones
    # get this server's rule sets.
    custom = api.get("/api/role/8", **headers).json()
    assert custom["name"] == "Analysts" and custom["organization"]["id"] == 2
    assert ids(api.get("/api/rule?role_id=8", **headers)) == sorted(
        Role.objects.get(pk=8).rules.values_list("pk", flat=True)
    )
    assert Role.objects.get(pk=8).rules.count() == 2
    assert sorted(User.objects.get(pk=2).roles.values_list("pk", flat=True)) == [8]
    assert Role.objects.get(pk=4).description != "old description"
    assert User.objects.get(pk=5).failed_login_attempts == 0  # reset by its successful login
    # New rows continue after the imported ids.
    created = api.post("/api/organization", {"name": "Hospital C"}, format="json", **headers)
    assert created.status_code == 201, created.content
    assert created.json()["id"] == 4
    assert AuditEntry.objects.filter(action="vantage6.import").count() == 1
    # A store available to all collaborations was linked by a global administrator; of another, who
    # linked it is unknown, so users' tokens are not sent to it.
    assert dict(AlgorithmStore.objects.values_list("pk", "trusted")) == {1: True, 2: False}


def test_dry_run_checks_everything_and_writes_nothing(manage, source):
    before = state()
    outcome = manage("import_vantage6", source, "--dry-run")
    assert outcome.code == 0, outcome.err
    assert "Would copy:" in outcome.out and "  user: 3" in outcome.out
    assert "nothing was written" in outcome.out
    assert state() == before


def test_a_target_that_holds_data_is_refused(manage, source):
    org = make_org("Already here")
    make_node(org, None, "existing")
    before = state()
    outcome = manage("import_vantage6", source)
    assert outcome.code != 0
    assert "already holds 1 organizations, 1 nodes" in outcome.err
    assert "nothing was written" in outcome.err
    assert state() == before


@pytest.mark.parametrize(
    "extra_sql,message",
    [
        ("CREATE TABLE session (id INTEGER PRIMARY KEY, name VARCHAR);", "newer than vantage6 4.15"),
        ("ALTER TABLE task ADD COLUMN session_id INTEGER;", "unknown task.session_id"),
    ],
)
def test_a_newer_schema_is_refused(manage, tmp_path, extra_sql, message):
    url = build_source(tmp_path / "newer.sqlite", extra_sql=extra_sql)
    before = state()
    outcome = manage("import_vantage6", url)
    assert outcome.code != 0
    assert message in outcome.err and "nothing was written" in outcome.err
    assert state() == before


def test_sources_that_are_no_vantage6_database_are_refused(manage, tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT);")
    partial = tmp_path / "partial.sqlite"
    sqlite3.connect(partial).executescript("CREATE TABLE organization (id INTEGER PRIMARY KEY, name TEXT);")
    text = tmp_path / "text.sqlite"
    text.write_text("not a database at all, just some text that is long enough" * 10)
    before = state()
    for url, message in [
        (f"sqlite:///{other}", "not a vantage6 server database"),
        (f"sqlite:///{partial}", "not a vantage6 4.x server database: no table authenticatable"),
        (f"sqlite:///{text}", "is not an SQLite database"),
        (f"sqlite:///{tmp_path / 'missing.sqlite'}", "no SQLite database at"),
        ("mysql://u:secret@host/db", "must be a sqlite:// or postgresql:// URL"),
    ]:
        outcome = manage("import_vantage6", url)
        assert outcome.code != 0, url
        assert message in outcome.err, outcome.err
        assert "secret" not in outcome.err
    assert state() == before
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.parametrize(
    "table,index,row,message",
    [
        ("user", 2, (5, "bob", "<bob>", "Bob", "B", "alice@a.example", 3, 0, None, None, None, None),
         "user 5: email 'alice@a.example' is also that of user 2"),
        ("user", 2, (5, "bob", "<bob>", "Bob", "B", None, 3, 0, None, None, None, None),
         "user 5: email is empty"),
        ("organization", 2, (3, "B" * 200, "", "", "", "", "", None), "organization 3: name is longer than"),
        ("run", 0, (20, "x", 10, 2, None, "yesterday", None, None, "pending", None, None, 0),
         "run 20: assigned_at 'yesterday' is not a date and time"),
        ("algorithmport", 0, (1, "eighty", 22, "jupyter"),
         "algorithmport 1: port 'eighty' is not a whole number"),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_and_nothing_is_written(manage, tmp_path, table, index, row, message):
    rows = {**ROWS, table: [*ROWS[table][:index], row, *ROWS[table][index + 1 :]]}
    url = build_source(tmp_path / "bad.sqlite", rows=rows)
    before = state()
    outcome = manage("import_vantage6", url)
    assert outcome.code != 0
    assert message in outcome.err, outcome.err
    assert state() == before


def test_command_lists_the_nodes_still_on_legacy_keys(manage, api, source):
    assert manage("import_vantage6", source).code == 0
    outcome = manage("node_key", "--legacy")
    assert outcome.code == 0, outcome.err
    lines = outcome.out.strip().splitlines()
    assert lines[0].startswith("2 nodes still log in with a key imported from vantage6")
    assert lines[1:] == ["3\tHospital A - Plain Node", "4\tHospital B - Plain Node"]
    assert api.post("/api/token/node", {"api_key": NODE_KEYS[3]}, format="json").status_code == 200
    assert manage("node_key", "--legacy").out.strip().splitlines()[1:] == ["4\tHospital B - Plain Node"]
    api.post("/api/token/node", {"api_key": NODE_KEYS[4]}, format="json")
    assert manage("node_key", "--legacy").out.strip() == "No node logs in with a key imported from vantage6."
