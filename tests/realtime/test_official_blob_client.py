"""The official vantage6 4.15.2 client against a real server with a large result store: the client
uploads each organization's input (in chunks) and names it, a node names the result it uploaded, an
algorithm container names the input it uploaded for a subtask, and the client reads the results back.
Each names only blobs it may read (its own organization's uploads), so this keeps working."""

from __future__ import annotations

import json

import pytest
import requests

from tests.factories import PASSWORD
from tests.realtime.helpers import make_user, make_world, token_pair
from tests.realtime.live import Daphne
from vantage6.client import Client
from vantage6.common import Singleton
from vantage6.common.encryption import DummyCryptor

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(live_db, live_folder):
    daphne = Daphne(live_db.process_env(V6_LARGE_RESULT_STORE=str(live_folder / "blobs-client")), live_folder)
    yield daphne
    daphne.show_log()
    daphne.stop()


class BlobNode:
    """What a vantage6 node does with blobs over REST: downloads its runs' inputs and uploads its
    results with its own token, then names the result in its run."""

    def __init__(self, api: str, node) -> None:
        self.api, self.node = api, node
        self.headers = {"Authorization": f"Bearer {token_pair(node)[0]}"}
        self.cryptor = DummyCryptor()

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, f"{self.api}/{path}", headers=self.headers, timeout=10, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def upload(self, data: bytes, headers: dict | None = None) -> str:
        response = requests.post(
            f"{self.api}/blobstream", data=data, headers=headers or self.headers, timeout=10
        )
        assert response.status_code == 201, response.text
        return response.json()["uuid"]

    def open_runs(self) -> list[dict]:
        return self.call("get", f"run?state=open&node_id={self.node.pk}&include=task")["data"]

    def execute(self, run: dict) -> None:
        assert run["blob_storage_used"]
        stored = requests.get(f"{self.api}/blobstream/{run['input']}", headers=self.headers, timeout=10)
        assert stored.status_code == 200, stored.text
        json.loads(self.cryptor.decrypt(stored.content))  # what the client uploaded
        output = json.dumps({"org": self.node.organization_id}).encode()
        result = self.upload(
            self.cryptor.encrypt_bytes_to_str(output, "", skip_base64_encoding_of_msg=True).encode()
        )
        body = {"result": result, "status": "completed", "finished_at": "2026-01-01T10:01:00Z"}
        self.call("patch", f"run/{run['id']}", json=body)


def test_inputs_and_results_in_the_blob_store(server, live_data):  # noqa: ARG001 - the live database
    world = make_world()
    researcher = make_user(world.org_a, roles=("Researcher",))
    host, port = server.url.rsplit(":", 1)
    client = Client(host, int(port), "/api", log_level="error")
    client.authenticate(researcher.username, PASSWORD)
    Singleton._instances.pop(DummyCryptor, None)
    client.setup_encryption(None)
    task = client.task.create(
        organizations=[world.org_a.pk, world.org_b.pk],
        name="blobs",
        image="example/sum",
        description="inputs and results as blobs",
        input_={"method": "sum", "kwargs": {"numbers": [1, 2, 3]}},
        collaboration=world.collab_ab.pk,
        databases=[{"label": "default"}],
    )
    assert "id" in task, task
    node_a, node_b = BlobNode(f"{server.url}/api", world.node_a), BlobNode(f"{server.url}/api", world.node_b)

    # An algorithm container of node A uploads the input of a subtask for B and names it.
    run_a = next(run for run in node_a.open_runs() if run["task"]["id"] == task["id"])
    issued = node_a.call(
        "post", "token/container", json={"task_id": task["id"], "image": run_a["task"]["image"]}
    )
    container = {"Authorization": f"Bearer {issued['container_token']}"}
    sub_input = node_a.upload(node_a.cryptor.encrypt_bytes_to_str(b'{"kwargs": {}}', ""), container)
    subtask = requests.post(
        f"{server.url}/api/task",
        headers=container,
        json={
            "name": "subtask",
            "image": "example/sum",
            "collaboration_id": world.collab_ab.pk,
            "organizations": [{"id": world.org_b.pk, "input": sub_input}],
            "databases": [{"label": "default"}],
        },
        timeout=10,
    )
    assert subtask.status_code == 201, subtask.text

    for node in (node_a, node_b):
        for run in node.open_runs():
            node.execute(run)
    results = client.wait_for_results(task["id"], interval=0.1)
    assert sorted(json.loads(item["result"])["org"] for item in results["data"]) == [
        world.org_a.pk,
        world.org_b.pk,
    ]
