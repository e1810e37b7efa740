"""POST /api/task: every check of the create flow in its order, the effects, and subtasks."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from collaborations.models import AlgorithmStore
from nodes.models import NodeConfig
from tasks.models import Run, Task, TaskDatabase
from tests.factories import (
    bearer,
    make_collab,
    make_node,
    make_org,
    make_study,
    make_task,
    make_user,
    store_status,
)
from tests.tasks.conftest import ENCRYPTED, container_headers_from, plain, task_body, user_with

pytestmark = pytest.mark.django_db


def post(api, who, body, **extra):
    return api.post("/api/task", body, format="json", **bearer(who), **extra)


def nothing_created():
    return Task.objects.count() == 0 and Run.objects.count() == 0 and TaskDatabase.objects.count() == 0


# --- check 1: validation, then collaboration / study ---------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {"image": "x"},
        {"image": "x", "collaboration_id": 1, "organizations": []},
        {"image": "x", "collaboration_id": "one", "organizations": [{"id": 1, "input": "e30="}]},
        {"image": "x", "collaboration_id": 2**40, "organizations": [{"id": 1, "input": "e30="}]},
        {"image": "x", "collaboration_id": 1, "organizations": [{"id": 1}]},
        {"image": "x", "collaboration_id": 1, "organizations": [{"id": 1, "input": 5}]},
        {
            "image": "x",
            "collaboration_id": 1,
            "organizations": [{"id": 1, "input": "a"}, {"id": 1, "input": "b"}],
        },
        {"image": "x", "organizations": [{"id": 1, "input": "e30="}]},
        {"image": "", "collaboration_id": 1, "organizations": [{"id": 1, "input": "e30="}]},
        {"image": "x", "name": "123", "collaboration_id": 1, "organizations": [{"id": 1, "input": "e30="}]},
        {"image": "x", "collaboration_id": 1, "organizations": {"id": 1}},
        {"image": "x", "collaboration_id": 1, "organizations": [{"id": 1, "input": ""}], "databases": [{}]},
        {
            "image": "x",
            "collaboration_id": 1,
            "organizations": [{"id": 1, "input": ""}],
            "databases": [{"label": "a", "unknown": 1}],
        },
        {
            "image": "x",
            "collaboration_id": 1,
            "organizations": [{"id": 1, "input": ""}],
            "databases": [{"label": "a", "preprocessing": [{"no_function": 1}]}],
        },
    ],
)
def test_check1_validation_comes_first(api, world, body):
    outsider = make_user(world.org_c)  # no rules at all: a later check would say 401
    response = post(api, outsider, body)
    assert response.status_code == 400, response.json()
    assert response.json()["msg"] == "Request body is incorrect"
    assert response.json()["errors"]
    assert nothing_created()


def test_check1_unknown_collaboration_is_404_before_membership_or_rights(api, world):
    # to who views every collaboration and study; to anyone else it is the 401 of one out of reach
    viewer = user_with(world.org_c, "collaboration.glo.view", "study.glo.view")
    outsider = make_user(world.org_c)
    for who, status in ((viewer, 404), (outsider, 401)):
        response = post(api, who, task_body(world, collaboration_id=99999))
        assert response.status_code == status
        response = post(api, who, task_body(world, collaboration_id=None, study_id=99999))
        assert response.status_code == status


def test_check1_study_of_another_collaboration_is_400(api, world, researcher):
    study_a2 = make_study(make_collab(world.org_a, name="A2"), world.org_a)
    response = post(api, researcher, task_body(world, study_id=study_a2.pk))
    assert response.status_code == 400
    assert "not part of collaboration" in response.json()["msg"]
    # a study the caller may not see is the 401 of one that does not exist
    study_c = make_study(world.collab_c, world.org_c)
    response = post(api, researcher, task_body(world, study_id=study_c.pk))
    assert response.json() == post(api, researcher, task_body(world, study_id=99999)).json()


# --- check 2: target organizations are members ---------------------------------------------------------
def test_check2_target_outside_collaboration_is_400_before_rights(api, world):
    outsider = make_user(world.org_a, "Viewer")  # sees the collaboration, may not create tasks
    body = task_body(world, organizations=[{"id": world.org_c.pk, "input": plain()}])
    response = post(api, outsider, body)
    assert response.status_code == 400
    assert f"[{world.org_c.pk}]" in response.json()["msg"]
    assert nothing_created()


def test_check2_target_outside_study_is_400(api, world, researcher):
    study = make_study(world.collab_ab, world.org_a)
    response = post(api, researcher, task_body(world, collaboration_id=None, study_id=study.pk))
    assert response.status_code == 400
    assert f"study id={study.pk}" in response.json()["msg"]
    only_a = task_body(world, study_id=study.pk, organizations=[{"id": world.org_a.pk, "input": plain()}])
    response = post(api, researcher, only_a)
    assert response.status_code == 201
    assert response.json()["study"]["id"] == study.pk


# --- check 3: every target has a node ------------------------------------------------------------------
def test_check3_target_without_node_is_400_listing_it(api, world):
    org_d = make_org("D")
    world.collab_ab.organizations.add(org_d)
    outsider = make_user(world.org_a, "Viewer")
    body = task_body(
        world, organizations=[{"id": world.org_a.pk, "input": plain()}, {"id": org_d.pk, "input": plain()}]
    )
    response = post(api, outsider, body)
    assert response.status_code == 400
    assert response.json()["msg"].endswith(f"[{org_d.pk}]")
    assert nothing_created()


def test_check3_a_containers_subtask_to_a_target_without_node_is_400(api, world):
    # org D is a member of the collaboration with a node in another collaboration only: that node counts not.
    org_d = make_org("D")
    world.collab_ab.organizations.add(org_d)
    world.collab_c.organizations.add(org_d)
    make_node(org_d, world.collab_c, "node-d-in-c")
    parent = make_task(world.collab_ab, world.org_a, world.org_a)
    headers = container_headers_from(api, world.node_a, parent)
    organizations = [{"id": world.org_b.pk, "input": plain()}, {"id": org_d.pk, "input": plain()}]
    body = task_body(world, image=parent.image, organizations=organizations)
    response = api.post("/api/task", body, format="json", **headers)
    assert response.status_code == 400
    assert response.json()["msg"] == (
        "Cannot create this task because there are no nodes for the following organization(s) "
        f"in collaboration id={world.collab_ab.pk}: [{org_d.pk}]"
    )
    assert list(Task.objects.values_list("id", flat=True)) == [parent.pk]


# --- check 4: node policies ----------------------------------------------------------------------------
def test_check4_node_policy_refuses_other_users_before_rights(api, world):
    NodeConfig.objects.create(node=world.node_b, key="allowed_users", value="999999")
    outsider = make_user(world.org_a, "Viewer")
    response = post(api, outsider, task_body(world))
    assert response.status_code == 400
    assert "node-b" in response.json()["msg"]


@pytest.mark.parametrize(
    "key, value", [("allowed_users", "self"), ("allowed_orgs", "A"), ("allowed_orgs", "org")]
)
def test_check4_node_policy_lets_listed_users_and_orgs_through(api, world, researcher, key, value):
    value = {"self": str(researcher.pk), "org": str(world.org_a.pk)}.get(value, value)
    NodeConfig.objects.create(node=world.node_b, key=key, value=value)
    NodeConfig.objects.create(node=world.node_b, key="allowed_users", value="999999")
    assert post(api, researcher, task_body(world)).status_code == 201


# --- check 5: the initiating organization is a member --------------------------------------------------
def test_check5_initiator_outside_collaboration_is_401_even_with_global_create(api, world):
    global_creator = user_with(world.org_c, "task.glo.create")
    response = post(
        api, global_creator, task_body(world, organizations=[{"id": world.org_a.pk, "input": ENCRYPTED}])
    )
    assert response.status_code == 401
    assert nothing_created()


# --- check 6: the permission (users) / the token (containers) ------------------------------------------
@pytest.mark.parametrize(
    "specs, roles, allowed",
    [
        ((), ("Viewer",), False),
        (("task.col.view", "task.glo.view"), (), False),
        (("task.col.create",), (), True),
        (("task.glo.create",), (), True),
    ],
)
def test_check6_user_needs_can_col_task_create(api, world, specs, roles, allowed):
    user = user_with(world.org_a, *specs, roles=roles)
    response = post(api, user, task_body(world, organizations=[{"id": world.org_b.pk, "input": ENCRYPTED}]))
    # The input is wrong for this collaboration: a 401 proves the permission is checked before it.
    assert response.status_code == (400 if allowed else 401)


def test_check6_container_token_rules(api, world, researcher):
    parent = make_task(
        world.collab_ab, world.org_a, world.org_a, init_user=researcher, image="repo/algo@sha256:1"
    )
    headers = container_headers_from(api, world.node_a, parent)
    body = task_body(
        world, image="repo/algo@sha256:1", organizations=[{"id": world.org_b.pk, "input": ENCRYPTED}]
    )

    wrong_image = api.post("/api/task", {**body, "image": "other/image"}, format="json", **headers)
    assert wrong_image.status_code == 401
    assert wrong_image.json() == {"msg": "Container-token is not valid"}

    Run.objects.filter(task=parent).update(status="completed")
    store_status(parent)
    finished = api.post("/api/task", body, format="json", **headers)
    assert finished.status_code == 401
    assert finished.json() == {"msg": "This container token is no longer valid"}


def test_check6_container_cannot_create_outside_its_collaboration(api, world):
    world.collab_c.organizations.add(world.org_a)
    make_node(world.org_a, world.collab_c, "node-a-in-c")
    parent = make_task(world.collab_ab, world.org_a, world.org_a)
    headers = container_headers_from(api, world.node_a, parent)
    body = task_body(world, image=parent.image, collaboration_id=world.collab_c.pk,
                     organizations=[{"id": world.org_a.pk, "input": plain()}])  # fmt: skip
    response = api.post("/api/task", body, format="json", **headers)
    assert response.status_code == 401
    assert Task.objects.count() == 1


# --- check 7: algorithm store --------------------------------------------------------------------------
class _StoreHandler(BaseHTTPRequestHandler):
    answers: dict = {}
    seen: list = []

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("server_url"), self.headers.get("Authorization")))
        status, body, delay = self.answers.get("next", (200, {"data": []}, 0))
        time.sleep(delay)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def store_server(settings):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True  # the store listens on this machine
    server = HTTPServer(("127.0.0.1", 0), _StoreHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _StoreHandler.seen.clear()
    yield server, _StoreHandler
    server.shutdown()
    server.server_close()


def _store(world, server, collab="ab"):
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    collaboration = {"ab": world.collab_ab, "c": world.collab_c, "all": None}[collab]
    # Only a global administrator links a store to all collaborations: such a store is trusted.
    return AlgorithmStore.objects.create(
        name="s", url=url, collaboration=collaboration, trusted=collab == "all"
    )


def test_check7_unknown_store_is_400(api, world, researcher):
    root = make_user(world.org_a, "Root")
    response = post(api, root, task_body(world, store_id=4242, server_url="http://me/api"))
    assert response.status_code == 400
    assert "4242" in response.json()["msg"]
    # who does not view every store gets the 401 of a store out of reach
    response = post(api, researcher, task_body(world, store_id=4242, server_url="http://me/api"))
    assert response.status_code == 401


def test_check7_store_of_another_collaboration_is_403_before_input_check(
    api, world, researcher, store_server
):
    store = _store(world, store_server[0], "c")
    body = task_body(world, store_id=store.pk, server_url="http://me/api",
                     organizations=[{"id": world.org_a.pk, "input": ENCRYPTED}])  # fmt: skip
    response = post(api, make_user(world.org_a, "Root"), body)
    assert response.status_code == 403
    assert post(api, researcher, body).status_code == 401  # a store it may not see: as an unknown one
    assert store_server[1].seen == []


def test_check7_store_digest_pins_the_image(api, world, researcher, store_server):
    server, handler = store_server
    store = _store(world, server, "all")
    handler.answers["next"] = (200, {"data": [{"image": "some/image", "digest": "sha256:abc"}]}, 0)
    response = post(api, researcher, task_body(world, store_id=store.pk, server_url="http://me/api"))
    assert response.status_code == 201, response.json()
    assert response.json()["image"] == "some/image@sha256:abc"
    assert response.json()["algorithm_store"]["id"] == store.pk
    path, server_url, authorization = handler.seen[0]
    assert path == "/api/algorithm?image=some%2Fimage"
    assert server_url == "http://me/api"
    assert authorization.startswith("Bearer ")


@pytest.mark.parametrize(
    "server_url", ["http://me/api\x01", "http://me/api\r\n X-Injected: 1", "http://me/api\t", "http://me/a b"]
)
def test_check7_a_server_url_with_a_blank_or_control_character_never_reaches_the_store(
    api, world, researcher, store_server, server_url
):
    """The URL goes to the store in a request header: a character a header would carry as something else
    (a folded line, a control character) is a 400 before any call."""
    server, handler = store_server
    store = _store(world, server, "all")
    response = post(api, researcher, task_body(world, store_id=store.pk, server_url=server_url))
    assert response.status_code == 400, response.json()
    assert "server_url" in response.json()["errors"]
    assert handler.seen == []
    assert nothing_created()


def test_check7_store_without_digest_keeps_image_and_drops_store(api, world, researcher, store_server):
    server, handler = store_server
    store = _store(world, server)
    handler.answers["next"] = (200, {"data": [{"image": "some/image"}]}, 0)
    response = post(api, researcher, task_body(world, store_id=store.pk, server_url="http://me/api"))
    assert response.status_code == 201
    assert response.json()["image"] == "some/image"
    assert response.json()["algorithm_store"] is None


@pytest.mark.parametrize("answer", [(404, {"msg": "no"}, 0), (200, {"data": []}, 0), (200, {"data": []}, 3)])
def test_check7_store_failure_or_slowness_is_a_quick_400(
    api, world, researcher, store_server, settings, answer
):
    settings.ALGORITHM_STORE_TIMEOUT_SECONDS = 1
    server, handler = store_server
    store = _store(world, server)
    handler.answers["next"] = answer
    started = time.monotonic()
    response = post(api, researcher, task_body(world, store_id=store.pk, server_url="http://me/api"))
    assert response.status_code == 400
    assert response.json()["msg"].startswith("Algorithm store error")
    assert time.monotonic() - started < 2.5
    assert nothing_created()


def test_check7_unreachable_store_or_missing_server_url_is_400(api, world, researcher, settings):
    store = AlgorithmStore.objects.create(name="s", url="http://127.0.0.1:9/api", collaboration=None)
    response = post(api, researcher, task_body(world, store_id=store.pk, server_url="http://me/api"))
    assert response.status_code == 400
    settings.SERVER_URL = ""
    response = post(api, researcher, task_body(world, store_id=store.pk))
    assert response.status_code == 400
    assert "server_url" in response.json()["msg"]


def test_check7_store_is_told_the_same_server_url_as_at_registration(
    api, world, researcher, store_server, settings
):
    """Without ``server_url`` the configured URL is sent with the API path, as when the store was linked."""
    settings.SERVER_URL = "https://v6.example.org"
    server, handler = store_server
    store = _store(world, server, "all")
    handler.answers["next"] = (200, {"data": [{"image": "some/image", "digest": "sha256:abc"}]}, 0)
    response = post(api, researcher, task_body(world, store_id=store.pk))
    assert response.status_code == 201, response.json()
    assert handler.seen[0][1] == "https://v6.example.org/api"


# --- check 8: input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "encrypted, value, status",
    [
        (False, plain(), 201),
        (False, ENCRYPTED, 400),
        (False, "not base64!", 400),
        (True, ENCRYPTED, 201),
        (True, plain(), 400),
        (True, "", 400),
    ],
)
def test_check8_input_must_match_the_encryption_of_the_collaboration(
    api, world, researcher, encrypted, value, status
):
    world.collab_ab.encrypted = encrypted
    world.collab_ab.save()
    body = task_body(
        world,
        organizations=[{"id": world.org_a.pk, "input": plain()}, {"id": world.org_b.pk, "input": value}],
    )
    if encrypted:
        body["organizations"][0]["input"] = ENCRYPTED
    response = post(api, researcher, body)
    assert response.status_code == status, response.json()
    if status == 201:
        stored = dict(Run.objects.values_list("organization_id", "input"))
        assert stored[world.org_b.pk] == value  # stored exactly as sent
    else:
        assert nothing_created()


@pytest.mark.parametrize("encrypted, status", [(False, 201), (True, 400)])
def test_check8_legacy_object_input_is_json_encoded_and_checked_like_any_input(
    api, world, researcher, encrypted, status
):
    """Older clients send the input as an object: it is stored as unencrypted input, base64 of its JSON,
    so an encrypted collaboration refuses it as it refuses any readable input."""
    world.collab_ab.encrypted = encrypted
    world.collab_ab.save()
    legacy = {"method": "avg", "kwargs": {"column": "age"}}
    body = task_body(world, organizations=[{"id": world.org_a.pk, "input": legacy}])
    response = post(api, researcher, body)
    assert response.status_code == status, response.json()
    if status == 201:
        assert json.loads(base64.b64decode(Run.objects.get().input)) == legacy
    else:
        assert "requires encryption" in response.json()["msg"]
        assert nothing_created()


@pytest.mark.parametrize("value", [["a"], 5, True, None])
def test_check1_input_is_a_string_or_a_legacy_object(api, world, researcher, value):
    body = task_body(world, organizations=[{"id": world.org_a.pk, "input": value}])
    response = post(api, researcher, body)
    assert response.status_code == 400
    assert "input" in response.json()["errors"]["organizations"]["0"]
    assert nothing_created()


def test_check8_with_a_blob_store_inputs_must_be_uuids(api, world, researcher, settings, tmp_path):
    settings.LARGE_RESULT_STORE = str(tmp_path)
    response = post(api, researcher, task_body(world))
    assert response.status_code == 400
    uploaded = api.generic(
        "POST", "/api/blobstream", b"x", content_type="application/octet-stream", **bearer(researcher)
    )
    blob = uploaded.json()["uuid"]
    body = task_body(world, organizations=[{"id": world.org_a.pk, "input": blob}])
    response = post(api, researcher, body)
    assert response.status_code == 201
    run = Run.objects.get()
    assert run.input == blob and run.blob_storage_used


# --- effects -------------------------------------------------------------------------------------------
def test_create_stores_task_databases_runs_and_announces_it(
    api, world, researcher, events, django_capture_on_commit_callbacks
):
    existing = make_task(world.collab_ab, world.org_a)
    body = task_body(
        world,
        databases=[
            {"label": "db1", "query": "q", "sheet_name": "s"},
            {"label": "db2", "arguments": {"x": [1]}},
        ],
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, researcher, body)
    assert response.status_code == 201
    data = response.json()
    task = Task.objects.get(pk=data["id"])
    assert task.job_id > existing.job_id and data["job_id"] == task.job_id
    assert data["status"] == "pending" and data["finished_at"] is None
    assert data["init_org"]["id"] == world.org_a.pk and data["init_user"]["id"] == researcher.pk
    assert data["parent"] is None
    assert data["databases"] == [
        {"label": "db1", "parameters": '{"query":"q","sheet_name":"s"}'},
        {"label": "db2", "parameters": '{"arguments":{"x":[1]}}'},
    ]
    assert sorted(task.runs.values_list("organization_id", "status")) == [
        (world.org_a.pk, "pending"), (world.org_b.pk, "pending"),
    ]  # fmt: skip
    assert events == [("new_task", {"id": task.pk, "parent_id": None}, f"collaboration_{world.collab_ab.pk}")]


def test_a_single_database_label_is_accepted(api, world, researcher):
    response = post(api, researcher, task_body(world, databases="default"))
    assert response.status_code == 201
    assert response.json()["databases"] == [{"label": "default", "parameters": "{}"}]


def test_subtask_through_a_container_token(
    api, world, researcher, events, django_capture_on_commit_callbacks
):
    store = AlgorithmStore.objects.create(name="s", url="http://store/api")
    parent = make_task(
        world.collab_ab, world.org_a, world.org_a, world.org_b,
        init_user=researcher, image="repo/algo@sha256:ff", algorithm_store=store,
    )  # fmt: skip
    headers = container_headers_from(api, world.node_b, parent)
    body = {
        "name": "subtask",
        "image": "repo/algo@sha256:ff",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk, "input": plain()}],
        "databases": [{"label": "default"}],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/task", body, format="json", **headers)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["parent"]["id"] == parent.pk
    assert data["job_id"] == parent.job_id
    assert data["init_user"]["id"] == researcher.pk
    assert data["init_org"]["id"] == world.org_b.pk  # the organization of the node that runs the parent
    assert data["image"] == parent.image
    assert data["algorithm_store"]["id"] == store.pk
    assert events[-1] == (
        "new_task",
        {"id": data["id"], "parent_id": parent.pk},
        f"collaboration_{world.collab_ab.pk}",
    )


def test_subtask_image_only_needs_to_end_with_the_token_image(api, world):
    parent = make_task(world.collab_ab, world.org_a, world.org_a, image="algo")
    headers = container_headers_from(api, world.node_a, parent)
    body = task_body(world, image="registry.example/algo")
    response = api.post("/api/task", body, format="json", **headers)
    assert response.status_code == 201
    assert response.json()["image"] == "algo"


def test_nodes_cannot_create_tasks(api, world):
    response = post(api, world.node_a, task_body(world))
    assert response.status_code == 401
    assert nothing_created()


def test_encrypted_collaboration_with_new_collab_helper(api):
    org = make_org()
    collab = make_collab(org, encrypted=True)
    make_node(org, collab)
    user = user_with(org, "task.col.create")
    body = {
        "image": "x",
        "collaboration_id": collab.pk,
        "organizations": [{"id": org.pk, "input": ENCRYPTED}],
    }
    assert post(api, user, body).status_code == 201
