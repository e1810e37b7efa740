"""A Python client generated from the published OpenAPI document works against a live server.

The document is fetched from the running server and turned into a client package by
``openapi-python-client`` (offline, in a few seconds); the client then logs in, lists organizations
and tasks, creates a task and reads its run, as a user and as a node, and reads the documented error
bodies. A document that does not say what the server does breaks the client's parsing here.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from functools import partial

import pytest
import requests

from tests.factories import PASSWORD, make_collab, make_node, make_org, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PACKAGE = "v6client"


@pytest.fixture
def generated(live_server, tmp_path):
    """The client package generated from the live server's ``/api/schema``, imported."""
    answer = requests.get(
        f"{live_server.url}/api/schema", headers={"Accept": "application/vnd.oai.openapi+json"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    (tmp_path / "schema.json").write_text(answer.text)
    # No post-generation hooks (formatters): the package is only imported.
    (tmp_path / "config.yaml").write_text("post_hooks: []\n")
    subprocess.run(
        [
            sys.executable, "-m", "openapi_python_client", "generate", "--path", "schema.json",
            "--meta", "none", "--output-path", PACKAGE, "--config", "config.yaml",
        ],
        cwd=tmp_path, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module(PACKAGE)
        importlib.import_module(f"{PACKAGE}.models")
        yield package
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _endpoint(package, name: str):
    """The module of one operation of the generated client, e.g. ``task.task_create``."""
    return importlib.import_module(f"{package.__name__}.api.{name}")


def test_generated_client_logs_in_lists_creates_a_task_and_reads_its_run(generated, live_server):
    org_a, org_b = make_org("gen-a"), make_org("gen-b")
    collab = make_collab(org_a, org_b, name="generated")
    _node, api_key = make_node(org_b, collab, "gen-node-b")
    user = make_user(org_a, "Root")

    api = partial(_endpoint, generated)
    models = generated.models
    anonymous = generated.Client(base_url=live_server.url, raise_on_unexpected_status=True)

    tokens = api("token.token_user_create").sync(
        client=anonymous, body=models.LoginRequest(username=user.username, password=PASSWORD)
    )
    assert isinstance(tokens, models.UserTokens)
    client = generated.AuthenticatedClient(
        base_url=live_server.url, token=tokens.access_token, raise_on_unexpected_status=True
    )

    organizations = api("organization.organization_list").sync(client=client, per_page=100)
    assert isinstance(organizations, models.PaginatedOrganizationList)
    assert {"gen-a", "gen-b"} <= {organization.name for organization in organizations.data}
    assert organizations.links.self_.startswith("/api/organization?")

    task = api("task.task_create").sync(
        client=client,
        body=models.TaskRequest(
            image="some/image",
            name="generated",
            collaboration_id=collab.pk,
            organizations=[models.OrganizationRequest(id=org_b.pk, input_="aW5wdXQ=")],
            databases=[models.DatabaseRequest(label="default", query="q")],
        ),
    )
    assert isinstance(task, models.Task)
    assert (task.collaboration.id, task.init_user.id, task.parent) == (collab.pk, user.pk, None)
    assert task.databases[0].label == "default"

    tasks = api("task.task_list").sync(client=client)
    assert isinstance(tasks, models.PaginatedTaskList)
    assert [listed.id for listed in tasks.data] == [task.id]

    with_runs = api("task.task_retrieve").sync(id=task.id, client=client, include="runs")
    (run_of_task,) = with_runs.runs
    run = api("run.run_retrieve").sync(id=run_of_task.id, client=client)
    assert isinstance(run, models.Run)
    assert (run.task.id, run.organization.id, run.results.id, run.input_) == (
        task.id,
        org_b.pk,
        run.id,
        "aW5wdXQ=",
    )

    embedded = api("run.run_retrieve").sync(id=run.id, client=client, include="task")
    assert isinstance(embedded.task, models.EmbeddedTask) and embedded.task.id == task.id

    # A node logs in with its API key and reads the runs of its collaboration with the same client.
    node_tokens = api("token.token_node_create").sync(
        client=anonymous, body=models.NodeLoginRequest(api_key=api_key)
    )
    assert isinstance(node_tokens, models.NodeTokens)
    as_node = generated.AuthenticatedClient(base_url=live_server.url, token=node_tokens.access_token)
    runs = api("run.run_list").sync(client=as_node)
    assert [listed.id for listed in runs.data] == [run.id]


def test_generated_client_reads_the_documented_error_bodies(generated, live_server):
    user = make_user(make_org("gen-errors"), "Root")
    api = partial(_endpoint, generated)
    models = generated.models
    anonymous = generated.Client(base_url=live_server.url)

    refused = api("token.token_user_create").sync(
        client=anonymous, body=models.LoginRequest(username=user.username, password="wrong")
    )
    assert isinstance(refused, models.Error) and refused.msg == "Failed to login"

    tokens = api("token.token_user_create").sync(
        client=anonymous, body=models.LoginRequest(username=user.username, password=PASSWORD)
    )
    client = generated.AuthenticatedClient(base_url=live_server.url, token=tokens.access_token)
    missing = api("organization.organization_retrieve").sync(id=2**31 - 1, client=client)
    assert isinstance(missing, models.Error) and "not found" in missing.msg

    invalid = api("task.task_create").sync(
        client=client, body=models.TaskRequest(image="some/image", organizations=[])
    )
    assert isinstance(invalid, models.ValidationError)
    assert (
        invalid.msg == "Request body is incorrect" and "organizations" in invalid.errors.additional_properties
    )

    bad_page = api("organization.organization_list").sync(client=client, page=0)
    assert isinstance(bad_page, models.ValidationError) and bad_page.msg == "page needs to be >= 1"
