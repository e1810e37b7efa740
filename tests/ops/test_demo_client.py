"""The demo network through the official client: the researcher's whole workflow against a live server,
with the demo nodes (plain HTTP with the printed API keys) completing the runs."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.management import call_command

from tests.rest_node import RestNode
from vantage6.client import Client
from vantage6.common import Singleton
from vantage6.common.encryption import DummyCryptor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


class DemoNode(RestNode):
    """What a node does over REST for its runs in an unencrypted collaboration."""

    def __init__(self, api: str, node: dict) -> None:
        super().__init__(api, node["api_key"])
        self.id, self.organization_id = node["id"], node["organization_id"]

    def complete_open_runs(self) -> int:
        runs = self.call("get", f"run?state=open&node_id={self.id}&include=task")["data"]
        for run in runs:
            arguments = json.loads(base64.b64decode(run["input"]))
            self.call(
                "patch", f"run/{run['id']}", json={"status": "active", "started_at": "2026-01-01T10:00:00"}
            )
            output = {"sum": sum(arguments["kwargs"]["numbers"]), "organization": self.organization_id}
            self.call(
                "patch",
                f"run/{run['id']}",
                json={
                    "result": base64.b64encode(json.dumps(output).encode()).decode(),
                    "log": "done",
                    "status": "completed",
                    "finished_at": "2026-01-01T10:01:00",
                },
            )
        return len(runs)


@pytest.fixture
def demo(capsys) -> dict:
    capsys.readouterr()
    call_command("demo", "--json")
    return json.loads(capsys.readouterr().out)


def test_the_demo_researcher_runs_a_task_with_the_official_client(live_server, demo):
    host, port = live_server.url.rsplit(":", 1)
    api = f"{live_server.url}/api"
    client = Client(host, int(port), "/api", log_level="error")
    client.authenticate(demo["username"], demo["password"])
    Singleton._instances.pop(DummyCryptor, None)
    client.setup_encryption(None)

    organizations = {org["id"]: org["name"] for org in client.organization.list()["data"]}
    member_ids = sorted(node["organization_id"] for node in demo["nodes"])
    assert set(member_ids) <= set(organizations)
    collaborations = client.collaboration.list()["data"]
    assert [c["name"] for c in collaborations if c["id"] == demo["collaboration"]["id"]] == [
        "demo-collaboration"
    ]
    nodes = client.node.list(collaboration=demo["collaboration"]["id"])["data"]
    assert sorted(node["name"] for node in nodes) == sorted(node["name"] for node in demo["nodes"])

    task = client.task.create(
        collaboration=demo["collaboration"]["id"],
        organizations=member_ids,
        name="sum",
        image="example/sum",
        description="adds numbers",
        input_={"method": "sum", "kwargs": {"numbers": [1, 2, 3]}},
        databases=[{"label": "default"}],
    )
    assert "id" in task, task
    assert client.task.get(task["id"])["status"] == "pending"

    assert sum(DemoNode(api, node).complete_open_runs() for node in demo["nodes"]) == 3

    results = client.wait_for_results(task["id"], interval=0.1)
    decoded = sorted(
        (json.loads(item["result"]) for item in results["data"]), key=lambda r: r["organization"]
    )
    assert decoded == [{"sum": 6, "organization": org_id} for org_id in member_ids]
    assert client.task.get(task["id"])["status"] == "completed"
    runs = client.run.from_task(task["id"])["data"]
    assert {run["status"] for run in runs} == {"completed"}
