"""Attackers of organization A against organizations B (shares collaboration AB) and C (shares
nothing): every read path, filter, include, sort and page size they can write must keep what the rules
do not grant them out of the answer."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from django.apps import apps

from accounts.audit import audit
from accounts.models import Role, Rule
from tasks.models import AlgorithmPort, Task
from tests.factories import (
    PASSWORD,
    bearer,
    make_collab,
    make_org,
    make_run,
    make_study,
    make_task,
    make_user,
)
from tests.security.partners import collaboration_admin_site, partner_also_elsewhere
from tests.tasks.conftest import container_identity

pytestmark = pytest.mark.django_db

CALLERS = ("researcher", "org admin", "collaboration admin", "node", "container", "anonymous")


@pytest.fixture
def scene(world):
    """Objects of C marked ``zzc``, a user and role of B marked ``zzb``; who attacks."""
    user_c = make_user(world.org_c, "Researcher", username="zzc-user")
    role_c = Role.objects.create(name="zzc-role", organization=world.org_c)
    task_c = make_task(world.collab_c, world.org_c, world.org_c, init_user=user_c, name="zzc-task")
    run_c = task_c.runs.get()
    run_c.input, run_c.result, run_c.log = "zzc-input", "zzc-result", "zzc-log"
    run_c.save()
    AlgorithmPort.objects.create(run=run_c, port=4444, label="zzc-port")
    study_c = make_study(world.collab_c, world.org_c, name="zzc-study")
    world.collab_c.name = "zzc-collab"
    world.collab_c.save()
    world.node_c.name = "zzc-node"
    world.node_c.save()
    audit(None, "user.create", user_c, username="zzc-user")
    user_b = make_user(world.org_b, "Researcher", username="zzb-user")
    role_b = Role.objects.create(name="zzb-role", organization=world.org_b)
    task_a = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, name="task-a")
    ids = {
        "org_a": world.org_a.pk, "org_b": world.org_b.pk, "org_c": world.org_c.pk,
        "collab_ab": world.collab_ab.pk, "collab_c": world.collab_c.pk,
        "collab_c2": make_collab(world.org_c, name="zzc-2").pk,  # without a node yet
        "user_a": make_user(world.org_a, "Researcher").pk, "user_b": user_b.pk, "user_c": user_c.pk,
        "role_b": role_b.pk, "node_b": world.node_b.pk, "run_b": task_a.runs.get(organization=world.org_b).pk,
        "task_b": make_task(world.collab_ab, world.org_b, world.org_b, name="task-b").pk,
        "role_c": role_c.pk, "task_c": task_c.pk, "job_c": task_c.job_id,
        "run_c": run_c.pk, "study_c": study_c.pk, "node_c": world.node_c.pk,
        "rule": Rule.objects.get(name="task", scope="GLOBAL", operation="VIEW").pk,  # no one of A holds it
    }  # fmt: skip
    callers = {
        "researcher": bearer(make_user(world.org_a, "Researcher")),
        "org admin": bearer(make_user(world.org_a, "Organization Admin")),
        "collaboration admin": bearer(make_user(world.org_a, "Collaboration Admin")),
        "node": bearer(world.node_a),
        "container": bearer(container_identity(task_a, world.node_a)),
        "anonymous": {},
        # the rightful editors of C's objects, to show that each request below is one that works
        "root": bearer(make_user(make_org("root-org"), "Root")),
        "user c": bearer(user_c),
        "node c": bearer(world.node_c),
    }
    world.node_c.status = "online"  # so that its tasks can be killed
    world.node_c.save()
    return ids, callers


def _hidden(caller: str) -> tuple[str, ...]:
    """What must never show: everything of C; B's users and roles unless the caller may view them."""
    return ("zzc",) if caller == "collaboration admin" else ("zzc", "zzb")


LISTS = ("user", "organization", "collaboration", "node", "task", "run", "result", "role", "rule", "study",
         "algorithmstore", "audit")  # fmt: skip
ID_FILTERS = ("organization_id", "collaboration_id", "user_id", "role_id", "rule_id", "task_id", "node_id",
              "study_id", "init_org_id", "init_user_id", "parent_id", "job_id", "run_id", "store_id",
              "algorithm_store_id", "actor_id", "object_id")  # fmt: skip
QUERIES = (
    "organization_id={org_c}", "organization_id={org_b}", "collaboration_id={collab_c}", "user_id={user_c}",
    "user_id={user_b}", "init_org_id={org_c}", "init_user_id={user_c}", "study_id={study_c}",
    "task_id={task_c}", "node_id={node_c}", "role_id={role_c}", "role_id={role_b}", "parent_id={task_c}",
    "job_id={job_c}", "run_id={run_c}", "port=4444", "include=runs,results,task,organizations",
    "include_permissions=1", "include_root=1", "username=z%25", "name=z%25", "email=z%25",
    "description=%25", "label=z%25", "sort=-id", "sort=password", "sort=otp_secret", "sort=api_key_hash",
    "sort=organization__name", "sort=input", "per_page=0", "per_page=-1", "per_page=1000000000",
    "page=0", "page=-5", "page=99999999999999999999", "per_page=x", "organization_id={org_c}&include_root=1",
    "object_organization_id={org_c}", "actor_organization_id={org_c}", "object_id={user_c}",
    # the first value checked, another used?
    "organization_id={org_a}&organization_id={org_c}",
    "collaboration_id={collab_ab}&collaboration_id={collab_c}",
    "init_org_id={org_a}&init_org_id={org_c}", "organization_id[]={org_c}", "organization_id={org_c}.0",
    "organization_id=%20{org_c}", "organization_id=0{org_c}", "organization_id=-{org_c}",
    "sort=id&sort=otp_secret", "include=task&include=runs",
    # ids past the id columns: nothing found, never a server error
    *(f"{name}=99999999999999999999999" for name in ID_FILTERS),
)  # fmt: skip
DETAILS = (
    "organization/{org_c}", "collaboration/{collab_c}", "user/{user_c}", "user/{user_b}", "role/{role_c}",
    "role/{role_b}", "task/{task_c}", "task/{task_c}/status", "run/{run_c}", "result/{run_c}",
    "study/{study_c}", "node/{node_c}", "vpn/algorithm/addresses",
    "vpn/algorithm/addresses?include_children=1",
)  # fmt: skip


def _paths(ids: dict) -> list[str]:
    paths = [f"/api/{name}?{query.format(**ids)}" for name in LISTS for query in QUERIES]
    paths += [f"/api/{path.format(**ids)}" for path in DETAILS]
    paths += [f"/api/{path.format(**ids)}?include=runs,results,task,organizations" for path in DETAILS]
    return paths


@pytest.mark.parametrize("caller", CALLERS)
def test_nothing_hidden_shows_whatever_the_path(api, scene, caller):
    ids, callers = scene
    leaks = []
    for path in _paths(ids):
        response = api.get(path, **callers[caller])
        body = response.content.decode()
        shown = [marker for marker in _hidden(caller) if marker in body]
        if shown or response.status_code >= 500:
            leaks.append(f"{path}: {response.status_code} {shown} {body[:300]}")
    assert not leaks, "\n".join(leaks)


def test_root_reads_what_the_attackers_may_not(api, scene):
    """The paths above do reach C's objects: for a caller who may read them."""
    ids, callers = scene
    for path in DETAILS[:-2]:  # the addresses are a container's alone
        response = api.get(
            f"/api/{path.format(**ids)}?include=runs,results,task,organizations", **callers["root"]
        )
        assert response.status_code == 200, path
    # Enough of them show C's objects: counted until there are enough (the rest would not change it).
    enough, shown = len(LISTS) * 5 + 1, 0
    for path in _paths(ids):
        shown += "zzc" in api.get(path, **callers["root"]).content.decode()
        if shown == enough:
            break
    assert shown == enough


def test_a_blob_of_c_is_read_by_c_alone(api, scene, world, settings, tmp_path):
    settings.LARGE_RESULT_STORE = f"file://{tmp_path}"
    ids, callers = scene
    name = str(uuid.uuid4())
    (tmp_path / name).write_bytes(b"zzc-blob")
    make_run(Task.objects.get(pk=ids["task_c"]), world.org_c, result=name, blob_storage_used=True)
    for caller in CALLERS:
        response = api.get(f"/api/blobstream/{name}", **callers[caller])
        assert response.status_code in (401, 404), caller
    assert b"".join(api.get(f"/api/blobstream/{name}", **callers["node c"]).streaming_content) == b"zzc-blob"


# --- writes naming C -------------------------------------------------------------------------------------
INPUT = base64.b64encode(json.dumps({"method": "m"}).encode()).decode()


def _task(collaboration: str, organization: str, **extra: str) -> dict:
    return {
        "name": "t", "image": "some/image", "collaboration_id": f"{{{collaboration}}}",
        "organizations": [{"id": f"{{{organization}}}", "input": INPUT}], "databases": [{"label": "default"}],
        **extra,
    }  # fmt: skip


# (method, path, body, the caller for whom it works): no caller of A may do any of them.
USER = {"username": "intruder", "email": "i@example.org", "password": PASSWORD, "organization_id": "{org_c}"}
COLUMN = {
    "db_label": "default",
    "collaboration_id": "{collab_c}",
    "organizations": [{"id": "{org_c}", "input": INPUT}],
}
WRITES = [
    ("patch", "organization/{org_c}", {"name": "renamed"}, "root"),
    ("patch", "collaboration/{collab_c}", {"name": "renamed"}, "root"),
    ("post", "collaboration/{collab_c}/organization", {"id": "{org_a}"}, "root"),
    ("delete", "collaboration/{collab_c}/organization", {"id": "{org_c}"}, "root"),
    ("delete", "collaboration/{collab_c}/node", {"id": "{node_c}"}, "root"),
    ("delete", "collaboration/{collab_c}?delete_dependents=1", None, "root"),
    ("post", "user", USER, "root"),
    ("patch", "user/{user_c}", {"firstname": "renamed"}, "root"),
    ("patch", "user/{user_a}", {"organization_id": "{org_c}"}, "root"),
    ("patch", "user/{user_a}", {"roles": ["{role_c}"]}, None),  # nobody: a role of another organization
    ("delete", "user/{user_c}?delete_dependents=1", None, "root"),
    ("post", "role", {"name": "intruder", "rules": [], "organization_id": "{org_c}"}, "root"),
    ("post", "role", {"name": "mighty", "rules": ["{rule}"]}, "root"),  # a rule the caller lacks
    ("patch", "role/{role_c}", {"name": "renamed"}, "root"),
    ("post", "role/{role_c}/rule/{rule}", None, "root"),
    ("delete", "role/{role_c}", None, "root"),
    ("post", "node", {"collaboration_id": "{collab_c2}", "organization_id": "{org_c}"}, "root"),
    ("patch", "node/{node_c}", {"name": "renamed"}, "root"),
    ("delete", "node/{node_c}", None, "root"),
    ("post", "recover/node", {"id": "{node_c}"}, "root"),
    ("post", "task", _task("collab_c", "org_c"), "user c"),
    ("post", "task", _task("collab_ab", "org_c"), None),  # nobody: C is not in AB
    ("post", "task", _task("collab_ab", "org_a", study_id="{study_c}"), None),  # nor its study
    ("post", "column", COLUMN, "user c"),
    ("post", "kill/task", {"id": "{task_c}"}, "root"),
    ("post", "kill/node/tasks", {"id": "{node_c}"}, "root"),
    ("delete", "task/{task_c}", None, "root"),
    ("patch", "run/{run_c}", {"status": "active"}, "node c"),
    ("post", "port", {"run_id": "{run_c}", "port": 8888}, "node c"),
    ("delete", "port?run_id={run_c}", None, "node c"),
    ("delete", "port?run_id=99999999999999999999999", None, None),
    ("post", "token/container", {"task_id": "{task_c}", "image": "some/image"}, "node c"),
    (
        "post",
        "study",
        {"name": "s", "collaboration_id": "{collab_c}", "organization_ids": ["{org_c}"]},
        "root",
    ),
    (
        "post",
        "study",
        {"name": "s", "collaboration_id": "{collab_ab}", "organization_ids": ["{org_c}"]},
        None,
    ),
    ("patch", "study/{study_c}", {"name": "renamed"}, "root"),
    ("post", "study/{study_c}/organization", {"id": "{org_c}"}, None),  # already in: nobody
    ("delete", "study/{study_c}", None, "root"),
]
UNSTABLE = {"last_seen", "ip", "status", "last_login_attempt"}  # what any authenticated request may touch


def _filled(value: object, ids: dict) -> object:
    if isinstance(value, str):
        text = value.format(**ids)
        return int(text) if value.startswith("{") and text.isdigit() else text
    if isinstance(value, list):
        return [_filled(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _filled(item, ids) for key, item in value.items()}
    return value


def _send(api, method: str, path: str, body: object, ids: dict, headers: dict):
    return getattr(api, method)(f"/api/{path.format(**ids)}", _filled(body, ids), format="json", **headers)


def _state() -> dict[str, list]:
    """Every row the API can write, without what logging in or being online changes."""
    state = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in ("accounts", "collaborations", "nodes", "tasks"):
            continue
        if model._meta.db_table in ("login_session", "client_limit", "socket_connection", "node_metrics"):
            continue
        fields = [f.attname for f in model._meta.concrete_fields if f.attname not in UNSTABLE]
        state[model._meta.db_table] = list(model._default_manager.order_by("pk").values_list(*fields))
    return state


@pytest.mark.parametrize(("method", "path", "body", "owner"), WRITES)
def test_no_caller_of_a_writes_what_c_holds(api, scene, method, path, body, owner):  # noqa: ARG001
    ids, callers = scene
    before = _state()
    answers = {}
    for caller in CALLERS:
        response = _send(api, method, path, body, ids, callers[caller])
        answers[caller] = response.status_code
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert _state() == before


@pytest.mark.parametrize(("method", "path", "body", "owner"), [w for w in WRITES if w[3]])
def test_the_writes_work_for_their_owner(api, scene, method, path, body, owner):
    ids, callers = scene
    response = _send(api, method, path, body, ids, callers[owner])
    assert 200 <= response.status_code < 300, response.content


# What the Collaboration Admin of A may not do to B, with which it shares AB (the rules it lacks).
B_WRITES = [
    ("patch", "node/{node_b}", {"name": "renamed"}, "root"),
    ("post", "recover/node", {"id": "{node_b}"}, "root"),
    ("post", "role", {"name": "intruder", "rules": [], "organization_id": "{org_b}"}, "root"),
    ("patch", "role/{role_b}", {"name": "renamed"}, "root"),
    ("delete", "role/{role_b}", None, "root"),
    ("delete", "user/{user_b}", None, "root"),
    ("delete", "organization/{org_b}?delete_dependents=1", None, "root"),
    ("delete", "task/{task_b}", None, "root"),
    ("patch", "run/{run_b}", {"status": "active"}, "node b"),
    ("post", "port", {"run_id": "{run_b}", "port": 8888}, "node b"),
]


@pytest.mark.parametrize(("method", "path", "body", "owner"), B_WRITES)
def test_a_collaboration_admin_writes_no_more_of_a_partner_than_its_rules_say(
    api, scene, world, method, path, body, owner
):
    ids, callers = scene
    before = _state()
    response = _send(api, method, path, body, ids, callers["collaboration admin"])
    assert 400 <= response.status_code < 500, response.content
    assert _state() == before
    callers["node b"] = bearer(world.node_b)
    assert 200 <= _send(api, method, path, body, ids, callers[owner]).status_code < 300


# --- a collaboration admin taking another organization in ----------------------------------------------
def test_a_collaboration_admin_cannot_take_an_organization_into_the_collaboration(api, world):
    """Once a member, C would lie within the collaboration-scope rules of A's admin, who could then
    create a user in C with their own roles and read what C does in its other collaborations."""
    admin = bearer(make_user(world.org_a, "Collaboration Admin"))
    make_task(world.collab_c, world.org_c, world.org_c, name="zzc-task")
    before = _state()
    path = f"/api/collaboration/{world.collab_ab.pk}"
    for method, url, body in [
        ("post", f"{path}/organization", {"id": world.org_c.pk}),
        ("patch", path, {"organization_ids": [world.org_a.pk, world.org_b.pk, world.org_c.pk]}),
    ]:
        response = getattr(api, method)(url, body, format="json", **admin)
        assert response.status_code == 401, response.content
        assert response.json() == {"msg": "You lack the permission to do that!"}
    mole = {
        "username": "mole",
        "email": "mole@example.org",
        "password": PASSWORD,
        "organization_id": world.org_c.pk,
    }
    assert api.post("/api/user", mole, format="json", **admin).status_code == 401
    assert _state() == before
    # Who may edit any collaboration may still add members; and anyone may take their own away.
    root = bearer(make_user(make_org("root-org"), "Root"))
    assert api.post(f"{path}/organization", {"id": world.org_c.pk}, format="json", **root).status_code == 200
    assert (
        api.delete(f"{path}/organization", {"id": world.org_c.pk}, format="json", **admin).status_code == 200
    )


GRANTS = [  # a role or a rule of collaboration scope for a new or an existing user of B
    ("post", "user", {"roles": ["{role}"]}),
    ("post", "user", {"rules": ["{rule}"]}),
    ("patch", "user/{user_b}", {"roles": ["{role}"]}),
    ("patch", "user/{user_b}", {"rules": ["{rule}"]}),
]
NEW_USER = {
    "username": "mole",
    "email": "mole@example.org",
    "password": PASSWORD,
    "organization_id": "{org_b}",
}


@pytest.fixture
def grant(api, world):
    """Sends one of GRANTS as a Collaboration Admin of A."""
    ids = {
        "org_b": world.org_b.pk,
        "user_b": make_user(world.org_b, username="colleague").pk,
        "role": Role.objects.get(name="Researcher", is_default_role=True).pk,
        "rule": Rule.objects.get(name="task", scope="COLLABORATION", operation="VIEW").pk,
    }
    admin = bearer(make_user(world.org_a, "Collaboration Admin"))

    def send(method: str, path: str, body: dict):
        return _send(api, method, path, {**NEW_USER, **body} if method == "post" else body, ids, admin)

    return send


@pytest.mark.parametrize(("method", "path", "body"), GRANTS)
def test_a_collaboration_admin_gives_no_partner_user_the_run_of_its_other_collaborations(
    world, grant, method, path, body
):
    """B also works with D, without A: through a user of B, A's admin would read what B and D do."""
    partner_also_elsewhere(world)
    before = _state()
    response = grant(method, path, body)
    assert response.status_code == 401, response.content
    assert "collaborations you are not in" in response.json()["msg"]
    assert _state() == before


@pytest.mark.parametrize(("method", "path", "body"), GRANTS)
def test_a_collaboration_admin_still_manages_the_users_of_partners_within_its_collaborations(
    grant, method, path, body
):
    assert grant(method, path, body).status_code in (200, 201)


def test_nor_through_the_admin_site(world):
    partner_also_elsewhere(world)
    browser = collaboration_admin_site(world)
    researcher = Role.objects.get(name="Researcher", is_default_role=True)
    before = _state()
    fields = {
        "username": "mole", "email": "mole@example.org", "new_password": "Secret-pass1!",
        "organization": str(world.org_b.pk), "roles": [str(researcher.pk)],
    }  # fmt: skip
    response = browser.submit("/admin/accounts/user/add/", fields)
    assert response.status_code == 200 and b"collaborations you are not in" in response.content
    assert _state() == before
