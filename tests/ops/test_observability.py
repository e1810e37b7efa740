"""One log line per request (text or JSON), and the Prometheus metrics at /api/metrics."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from datetime import datetime

import pytest
import requests
from django.conf import settings

from nodes.consumers import server as socket_server
from nodes.models import Node
from nodes.services import node_metrics_store
from tasks.models import Run
from tests.factories import PASSWORD, bearer, make_task, make_user
from tests.realtime.live import ROOT, free_port
from vantage6.api.observability import METRICS
from vantage6.logging import JsonFormatter
from vantage6.socketio.store import Session

pytestmark = pytest.mark.django_db

REQUEST_LOGGER = "vantage6.request"


def request_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == REQUEST_LOGGER]


def test_a_request_is_logged_once_with_method_path_status_time_and_principal(api, world, caplog):
    user = make_user(world.org_a, "Researcher")
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)

    api.get(f"/api/organization/{world.org_a.pk}", **bearer(user))
    api.get("/api/version")

    first, second = request_records(caplog)
    assert first.fields == {
        "method": "GET", "path": f"/api/organization/{world.org_a.pk}", "status": 200,
        "ms": first.fields["ms"], "principal": f"user:{user.pk}",
    }  # fmt: skip
    assert re.fullmatch(
        rf"GET /api/organization/{world.org_a.pk} 200 \d+\.\dms user:{user.pk}", first.message
    )
    assert second.fields["principal"] == "anonymous"
    api.get("/api/node", **bearer(world.node_b))
    assert request_records(caplog)[-1].fields["principal"] == f"node:{world.node_b.pk}"


def test_no_secret_or_body_is_logged(api, world, caplog):
    user = make_user(world.org_a)
    caplog.set_level(logging.DEBUG)

    api.post("/api/token/user", {"username": user.username, "password": PASSWORD}, format="json")
    api.post("/api/token/node", {"api_key": world.keys[world.node_a.pk]}, format="json")
    api.get("/api/user", HTTP_AUTHORIZATION="Bearer not.a.token")

    assert [r.fields["status"] for r in request_records(caplog)][:2] == [200, 200]
    logged = "\n".join(
        record.getMessage() + json.dumps(getattr(record, "fields", {})) for record in caplog.records
    )
    for secret in (PASSWORD, world.keys[world.node_a.pk], "not.a.token"):
        assert secret not in logged


def test_control_characters_in_the_path_cannot_forge_a_line(api, caplog):
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)

    api.get("/api/x%0AGET /api/fake 200")

    (record,) = request_records(caplog)
    assert "\n" not in record.getMessage()
    assert record.fields["path"] == "/api/x\\nGET /api/fake 200"


def test_control_characters_in_the_method_cannot_forge_a_line(api, caplog):
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)

    api.generic("GET\n2026-12-05 INFO vantage6.request: GET", "/api/version")

    (record,) = request_records(caplog)
    assert record.getMessage().isprintable()
    assert record.fields["method"] == "GET\\n2026-12-05 INFO VANTAGE6.REQUEST: GET"  # Django upper-cases it


def test_json_lines_carry_the_request_fields(api, caplog):
    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)
    api.get("/api/version")

    line = JsonFormatter().format(request_records(caplog)[0])

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["logger"] == REQUEST_LOGGER and entry["level"] == "INFO"
    assert (entry["method"], entry["path"], entry["status"], entry["principal"]) == (
        "GET", "/api/version", 200, "anonymous",
    )  # fmt: skip
    assert isinstance(entry["ms"], float)
    datetime.fromisoformat(entry["time"])


# --- metrics ----------------------------------------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` (labels in any order; all must match)."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z0-9_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match[3])
    return None


def test_metrics_are_off_by_default(api):
    response = api.get("/api/metrics")

    assert response.status_code == 404
    assert response.json() == {"msg": "Metrics are not enabled (V6_METRICS=1)."}


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_ENABLED = True
    with METRICS._lock:
        METRICS.requests.clear()
        METRICS.buckets.clear()
        METRICS.sums.clear()


def test_requests_by_route_and_status_and_latency(api, world, metrics_on):  # noqa: ARG001
    user = make_user(world.org_a, "Researcher")
    for _ in range(3):
        api.get(f"/api/organization/{world.org_a.pk}", **bearer(user))
    api.get("/api/organization/999999", **bearer(user))  # no such row: 401, as one out of view
    api.generic("BREW", "/api/version")

    response = api.get("/api/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    route = "api/organization/<pk>"
    assert metric(text, "vantage6_requests_total", method="GET", route=route, status="200") == 3
    assert metric(text, "vantage6_requests_total", method="GET", route=route, status="401") == 1
    assert metric(text, "vantage6_requests_total", method="OTHER", route="api/version", status="405") == 1
    assert metric(text, "vantage6_request_duration_seconds_count", method="GET", route=route) == 4
    assert metric(text, "vantage6_request_duration_seconds_bucket", method="GET", route=route, le="+Inf") == 4
    buckets = [
        metric(text, "vantage6_request_duration_seconds_bucket", method="GET", route=route, le=str(bound))
        for bound in (0.005, 0.1, 10.0)
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert metric(text, "vantage6_request_duration_seconds_sum", method="GET", route=route) > 0
    assert "# TYPE vantage6_request_duration_seconds histogram" in text


def test_nodes_runs_and_sockets(api, world, metrics_on, monkeypatch):  # noqa: ARG001
    world.node_a.status = "online"
    world.node_a.save()
    task = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    Run.objects.filter(task=task, organization=world.org_b).update(status="active")
    sessions = {}
    for sid, transport, owner in [
        ("s1", "websocket", f"node:{world.node_a.pk}"),
        ("s2", "websocket", f"node:{world.node_b.pk}"),
        ("s3", "polling", "user:7"),
        ("s4", "polling", ""),
    ]:
        sessions[sid] = Session(sid, transport)
        sessions[sid].owner = owner
    monkeypatch.setattr(socket_server, "sessions", sessions)

    text = api.get("/api/metrics").content.decode()

    assert metric(text, "vantage6_nodes_online") == 1
    assert metric(text, "vantage6_runs", status="pending") == 1
    assert metric(text, "vantage6_runs", status="active") == 1
    assert metric(text, "vantage6_sockets_connected", transport="websocket", kind="node") == 2
    assert metric(text, "vantage6_sockets_connected", transport="polling", kind="user") == 1
    assert metric(text, "vantage6_sockets_connected", transport="polling", kind="anonymous") == 1
    assert "# TYPE vantage6_sockets_connected gauge" in text

    del sessions["s2"]
    text = api.get("/api/metrics").content.decode()
    assert metric(text, "vantage6_sockets_connected", transport="websocket", kind="node") == 1


def test_metrics_take_a_fixed_number_of_queries(api, world, metrics_on, django_assert_max_num_queries):  # noqa: ARG001
    for _ in range(5):
        make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    for node in (world.node_a, world.node_b):
        Node.objects.filter(pk=node.pk).update(status="online")
        node_metrics_store(node.pk, {"cpu_percent": 1, "gpu_load": [1, 2]})
    with django_assert_max_num_queries(4):
        api.get("/api/metrics")


def test_only_online_nodes_report_metrics(api, world, metrics_on):  # noqa: ARG001
    """A node the heartbeat sweep marked offline no longer shows its last report."""
    Node.objects.filter(pk=world.node_a.pk).update(status="online")
    for node in (world.node_a, world.node_b):
        node_metrics_store(node.pk, {"cpu_percent": 7, "os": "Linux", "platform": "arm64"})

    text = api.get("/api/metrics").content.decode()

    labels = {"os": "Linux", "platform": "arm64"}
    assert metric(text, "vantage6_node_cpu_percent", node_id=str(world.node_a.pk), **labels) == 7
    assert metric(text, "vantage6_node_cpu_percent", node_id=str(world.node_b.pk), **labels) is None


# --- under daphne -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite_folder(tmp_path_factory):
    """A migrated SQLite database of its own for daphne processes."""
    folder = tmp_path_factory.mktemp("daphne")
    env = {**_base_env(), "V6_DATA_DIR": str(folder)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    return folder


def _base_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("V6_")} | {
        "V6_SECRET_KEY": settings.SECRET_KEY,
        "V6_JWT_SECRET_KEY": settings.JWT_SECRET_KEY,
    }


def daphne_output(folder, *paths: str, **env: str) -> list[str]:
    """The lines daphne (run as the deployment runs it: ``-v 0``) writes while serving ``paths``."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-v",
            "0",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "vantage6.asgi:application",
        ],
        cwd=ROOT,
        env={**_base_env(), "V6_DATA_DIR": str(folder), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for attempt in range(300):
            try:
                requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None and attempt < 299, "daphne did not start"
                time.sleep(0.1)
        for path in paths:
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.live
def test_daphne_writes_one_json_line_per_request(sqlite_folder):
    lines = daphne_output(sqlite_folder, "/api/version", "/api/nothing-here", V6_LOG_FORMAT="json")

    entries = [json.loads(line) for line in lines]  # every line is JSON: no access log of daphne's own
    requests_logged = [
        (e["method"], e["path"], e["status"]) for e in entries if e["logger"] == REQUEST_LOGGER
    ]
    assert requests_logged == [("GET", "/api/health", 200), ("GET", "/api/version", 200),
                               ("GET", "/api/nothing-here", 404)]  # fmt: skip


@pytest.mark.live
def test_daphne_log_level_warning_hides_requests(sqlite_folder):
    lines = daphne_output(sqlite_folder, "/api/version", V6_LOG_LEVEL="warning")

    assert not [line for line in lines if "/api/version" in line]
