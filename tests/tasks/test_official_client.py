"""The whole life of a task through the official vantage6 4.15.2 client against a live server.

A user creates tasks with ``vantage6.client.Client``; a node (plain HTTP with its own token, as the
vantage6 node talks to the server) picks up its runs, decrypts the input, and patches the runs to
completed with results encrypted for the initiating organization; the user reads them back with
``wait_for_results`` and ``result``. An algorithm container creates a subtask with its token.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.factories import PASSWORD, make_collab, make_node, make_org, make_user
from tests.rest_node import RestNode
from vantage6.client import Client
from vantage6.common import Singleton
from vantage6.common.encryption import DummyCryptor, RSACryptor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def fresh_cryptor(cls, *args):
    """The client's cryptors are process-wide singletons; each organization here needs its own."""
    Singleton._instances.pop(cls, None)
    return cls(*args)


def make_key(path):
    RSACryptor.create_new_rsa_key(path)
    return path


class FakeNode(RestNode):
    """What a vantage6 node does over REST for its runs (node-protocol §3.2 to §3.4)."""

    def __init__(self, base: str, node, api_key: str, cryptor) -> None:
        super().__init__(base, api_key)
        self.node, self.cryptor = node, cryptor

    def share_public_key(self) -> None:
        self.call(
            "patch",
            f"organization/{self.node.organization_id}",
            json={"public_key": self.cryptor.public_key_str},
        )

    def open_runs(self) -> list[dict]:
        return self.call("get", f"run?state=open&node_id={self.node.pk}&include=task")["data"]

    def container_token(self, run: dict) -> str:
        task = run["task"]
        return self.call("post", "token/container", json={"task_id": task["id"], "image": task["image"]})[
            "container_token"
        ]

    def execute(self, run: dict) -> dict:
        """Run the 'algorithm' (sum the input's numbers) and report the result."""
        self.call("patch", f"run/{run['id']}", json={"started_at": "2026-01-01T10:00:00.000001+00:00"})
        self.call("patch", f"run/{run['id']}", json={"status": "active"})
        payload = json.loads(self.cryptor.decrypt(run["input"]).decode())
        output = json.dumps({"sum": sum(payload["kwargs"]["numbers"]), "org": self.node.organization_id})
        init_org = self.call("get", f"task/{run['task']['id']}")["init_org"]["id"]
        public_key = self.call("get", f"organization/{init_org}")["public_key"]
        result = self.cryptor.encrypt_bytes_to_str(output.encode(), public_key)
        return self.call(
            "patch",
            f"run/{run['id']}",
            json={
                "result": result,
                "log": "ok",
                "status": "completed",
                "finished_at": "2026-01-01T10:01:00Z",
            },
        )


@pytest.fixture
def server(live_server):
    host, port = live_server.url.rsplit(":", 1)
    return host, int(port), f"{live_server.url}/api"


def user_client(server, user) -> Client:
    host, port, _ = server
    client = Client(host, port, "/api", log_level="error")
    client.authenticate(user.username, PASSWORD)
    assert client.whoami is not None, "login through the official client failed"
    return client


def _life_of_a_task(server, client, collab, org_a, org_b, node_a, node_b):
    task = client.task.create(
        organizations=[org_a.pk, org_b.pk],
        name="sum",
        image="example/sum",
        description="adds numbers",
        input_={"method": "sum", "kwargs": {"numbers": [1, 2, 3]}},
        collaboration=collab.pk,
        databases=[{"label": "default"}],
    )
    assert "id" in task, task
    assert client.task.get(task["id"])["status"] == "pending"

    # An algorithm container of node A creates a subtask for organization B.
    run_a = next(run for run in node_a.open_runs() if run["task"]["id"] == task["id"])
    token = node_a.container_token(run_a)
    sub_input = node_a.cryptor.encrypt_bytes_to_str(
        json.dumps({"method": "partial", "kwargs": {"numbers": [10]}}).encode(),
        node_a.call("get", f"organization/{org_b.pk}")["public_key"],
    )
    subtask = requests.post(
        f"{server[2]}/task",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "subtask", "image": "example/sum", "collaboration_id": collab.pk,
              "organizations": [{"id": org_b.pk, "input": sub_input}], "databases": [{"label": "default"}]},
        timeout=10,
    )  # fmt: skip
    assert subtask.status_code == 201, subtask.text
    assert subtask.json()["parent"]["id"] == task["id"]
    assert client.task.get(subtask.json()["id"])["init_org"]["id"] == org_a.pk

    for node in (node_a, node_b):
        for run in node.open_runs():
            node.execute(run)

    results = client.wait_for_results(task["id"], interval=0.1)
    decoded = sorted((json.loads(item["result"]) for item in results["data"]), key=lambda r: r["org"])
    assert decoded == [{"sum": 6, "org": org_a.pk}, {"sum": 6, "org": org_b.pk}]
    assert client.task.get(task["id"])["status"] == "completed"
    one = client.result.get(results["data"][0]["id"])
    assert json.loads(one)["sum"] == 6
    # The subtask's result is encrypted for the container's organization (A), which can read it.
    sub_result = node_a.call("get", f"result?task_id={subtask.json()['id']}")["data"][0]["result"]
    assert json.loads(node_a.cryptor.decrypt(sub_result).decode()) == {"sum": 10, "org": org_b.pk}


def test_unencrypted_collaboration(server):
    org_a, org_b = make_org("A"), make_org("B")
    collab = make_collab(org_a, org_b, name="plain", encrypted=False)
    (n_a, key_a), (n_b, key_b) = make_node(org_a, collab), make_node(org_b, collab)
    client = user_client(server, make_user(org_a, "Researcher"))
    client.setup_encryption(None)
    cryptor = fresh_cryptor(DummyCryptor)
    node_a, node_b = FakeNode(server[2], n_a, key_a, cryptor), FakeNode(server[2], n_b, key_b, cryptor)
    _life_of_a_task(server, client, collab, org_a, org_b, node_a, node_b)


def test_encrypted_collaboration(server, tmp_path):
    org_a, org_b = make_org("A"), make_org("B")
    collab = make_collab(org_a, org_b, name="secret", encrypted=True)
    (n_a, key_a), (n_b, key_b) = make_node(org_a, collab), make_node(org_b, collab)
    key_file_a, key_file_b = make_key(tmp_path / "a.pem"), make_key(tmp_path / "b.pem")

    node_b = FakeNode(server[2], n_b, key_b, fresh_cryptor(RSACryptor, key_file_b))
    node_b.share_public_key()
    # Uploading the organization's key needs organization edit rights (Organization Admin).
    client = user_client(server, make_user(org_a, "Researcher", "Organization Admin"))
    Singleton._instances.pop(RSACryptor, None)
    client.setup_encryption(str(key_file_a))  # uploads organization A's public key
    node_a = FakeNode(server[2], n_a, key_a, fresh_cryptor(RSACryptor, key_file_a))
    assert node_a.call("get", f"organization/{org_a.pk}")["public_key"] == node_a.cryptor.public_key_str

    # Plain input is refused in an encrypted collaboration.
    refused = requests.post(
        f"{server[2]}/task",
        headers={"Authorization": f"Bearer {client.token}"},
        json={
            "image": "x",
            "collaboration_id": collab.pk,
            "organizations": [{"id": org_a.pk, "input": "e30="}],
        },
        timeout=10,
    )
    assert refused.status_code == 400
    _life_of_a_task(server, client, collab, org_a, org_b, node_a, node_b)
