"""A node's port and a user's kill check their caller in the write's own statement (on SQLite too): the
token's login and generation, the node's run, the user's global right. Every way a caller is no longer
valid, or never was, is refused as before, with nothing written; the SQL form of the token's check
never lets through a token the Python form refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from accounts.authentication import DeferredCaller
from accounts.models import AuditEntry, Authenticatable, LoginSession
from accounts.sessions import TokenRevoked, check_current, current_login_sql
from accounts.tokens import decode, login_tokens
from nodes.events import event_emitted
from tasks.models import AlgorithmPort, Run
from tests.factories import bearer, make_collab, make_org, make_run, make_task, make_user

pytestmark = pytest.mark.django_db


def port(api, headers, run):
    return api.post("/api/port", {"port": 8080, "run_id": run.pk, "label": "api"}, format="json", **headers)


def kill(api, headers, task):
    return api.post("/api/kill/task", {"id": task.pk}, format="json", **headers)


def revoke_logins(identity) -> None:
    LoginSession.objects.filter(identity_id=identity.pk).update(revoked_at=timezone.now())


def next_generation(identity) -> None:
    Authenticatable.objects.filter(pk=identity.pk).update(token_generation=F("token_generation") + 1)


def no_longer_valid(node, attack: str, accepted: Callable[[dict], bool]) -> dict:
    """The node's headers, made invalid by ``attack`` after a write with them was ``accepted`` (refused
    for a login the server never started)."""
    headers = unknown_login(node, "node") if attack == "unknown login" else bearer(node)
    assert accepted(headers) == (attack != "unknown login")
    if attack == "deleted node":
        node.delete()
    else:
        _invalidate(node, attack)
    return headers


def unknown_login(identity, client_type: str) -> dict:
    """Headers with a token signed with the server's key for a login the server never started."""
    identity.refresh_from_db(fields=["token_generation"])
    token = login_tokens(
        identity.pk, client_type, [], generation=identity.token_generation,
        session_id="f" * 32, refresh_jti="j" * 32, ends=None,
    )[0]  # fmt: skip
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_port_is_written_by_its_node_with_its_audit_record(api, network):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    response = port(api, bearer(node), run)
    assert response.status_code == 201, response.content
    assert AlgorithmPort.objects.filter(run=run, port=8080, label="api").count() == 1
    entry = AuditEntry.objects.get(action="port.create")
    assert (entry.actor_type, entry.actor_id, entry.actor_organization_id) == ("node", node.pk, org.pk)
    assert entry.object_id == response.json()["id"]
    assert Authenticatable.objects.get(pk=node.pk).last_seen is not None


def _invalidate(identity, attack: str) -> None:
    """The tokens of ``identity`` made no longer valid as ``attack`` says (an unknown login: already)."""
    if attack == "revoked login":
        revoke_logins(identity)
    elif attack == "older generation":
        next_generation(identity)


@pytest.mark.parametrize("attack", ["revoked login", "older generation", "unknown login", "deleted node"])
def test_a_port_by_a_node_no_longer_valid_is_refused_and_nothing_is_written(api, network, attack):
    org, _, node, _, task = network
    run = task.runs.get(organization=org)
    headers = no_longer_valid(node, attack, lambda headers: port(api, headers, run).status_code == 201)
    before = AlgorithmPort.objects.count(), AuditEntry.objects.count()
    response = port(api, headers, run)
    assert response.status_code == 401, response.content
    assert (AlgorithmPort.objects.count(), AuditEntry.objects.count()) == before


def test_a_port_of_a_token_of_a_login_the_server_never_started_is_refused(api, network):
    org, _, node, _, task = network
    response = port(api, unknown_login(node, "node"), task.runs.get(organization=org))
    assert response.status_code == 401
    assert response.json()["msg"] == "Token has been revoked"
    assert not AlgorithmPort.objects.exists() and not AuditEntry.objects.filter(action="port.create").exists()


def test_a_port_of_another_nodes_run_or_by_a_user_is_refused(api, network):
    org, _, node, _, task = network
    other_run = task.runs.exclude(organization=org).get()
    refused = port(api, bearer(node), other_run)
    assert refused.status_code == 401
    assert refused.json()["msg"] == "This algorithm run is not executed by your node!"
    user = make_user(org, "Root")
    headers = bearer(user)
    refused = port(api, headers, task.runs.get(organization=org))
    assert refused.status_code == 401
    assert refused.json()["msg"] == "This endpoint is not available to users"
    # A user's token no longer valid is refused as such first, as before the caller's check moved.
    revoke_logins(user)
    assert port(api, headers, other_run).json()["msg"] == "Token has been revoked"
    assert not AlgorithmPort.objects.exists() and not AuditEntry.objects.filter(action="port.create").exists()


def test_a_token_no_longer_valid_is_refused_before_the_body_is_judged(api, network):
    org, _, node, _, _ = network
    node_headers, root_headers = bearer(node), bearer(make_user(org, "Root"))
    LoginSession.objects.update(revoked_at=timezone.now())
    for path, headers in (("/api/port", node_headers), ("/api/kill/task", root_headers)):
        for body in ({"port": "x"}, {"id": "x"}, []):
            response = api.post(path, body, format="json", **headers)
            assert response.status_code == 401, (path, body, response.content)
            assert response.json()["msg"] == "Token has been revoked"
        malformed = api.post(path, "{", content_type="application/json", **headers)
        assert malformed.status_code == 401, malformed.content


def test_a_kill_by_a_user_with_a_global_right_is_written_with_its_audit_record(
    api, network, django_capture_on_commit_callbacks
):
    org, _, _, _, first = network
    root = make_user(org, "Root")
    # A collaboration whose id is none of the other keys of its task or the kill: only it names the room
    # (a task more than collaborations first: their ids do not go in step).
    make_task(first.collaboration, org)
    for name in "defgh":
        collab = make_collab(org, name=name)
        task = make_task(collab, org, org)
        if collab.pk not in (org.pk, root.pk, task.pk, task.job_id, task.init_user_id):
            break
    else:
        pytest.fail("no collaboration of an id of its own")
    for run in task.runs.all():
        run.status = "active"
        run.save()
    sent: list[tuple[str, object, str]] = []

    def receive(sender, event, data, room, namespace, **kwargs):  # noqa: ARG001 - signal signature
        sent.append((event, data, room))

    event_emitted.connect(receive, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = kill(api, bearer(root), task)
    finally:
        event_emitted.disconnect(receive)
    assert response.status_code == 200, response.content
    # The task's collaboration, read by the statement that kills its runs, names the nodes' room.
    (event, data, room), *_ = sent
    assert (event, room) == ("kill_containers", f"collaboration_{collab.pk}")
    assert data["collaboration_id"] == collab.pk
    killed = sorted(entry["run_id"] for entry in data["kill_list"])
    assert killed == sorted(task.runs.values_list("id", flat=True))
    assert set(Run.objects.filter(task=task).values_list("status", flat=True)) == {"killed by user"}
    entry = AuditEntry.objects.get(action="task.kill")
    assert (entry.actor_type, entry.actor_id, entry.actor_organization_id) == ("user", root.pk, org.pk)
    assert (entry.object_id, entry.object_organization_id) == (task.pk, org.pk)


@pytest.mark.parametrize(
    "attack", ["revoked login", "older generation", "unknown login", "global right taken away"]
)
def test_a_kill_by_a_user_no_longer_allowed_is_refused_and_nothing_is_written(api, network, attack):
    org, collab, _, _, task = network
    outsider = make_org("q")  # the user's organization is no member: only a global right reaches the task
    root = make_user(outsider, "Root")
    first = make_task(collab, org, org)
    headers = unknown_login(root, "user") if attack == "unknown login" else bearer(root)
    assert kill(api, headers, first).status_code == (401 if attack == "unknown login" else 200)
    if attack == "global right taken away":
        root.roles.clear()
    else:
        _invalidate(root, attack)
    before = AuditEntry.objects.count()
    response = kill(api, headers, task)
    assert response.status_code == 401, response.content
    assert set(Run.objects.filter(task=task).values_list("status", flat=True)) == {"pending"}
    assert AuditEntry.objects.count() == before


def test_a_collaboration_admin_kills_in_its_collaborations_only(api, network):
    org, _, _, _, task = network
    admin = make_user(org, "Collaboration Admin")
    elsewhere = make_task(make_collab(make_org("x"), name="d"), make_org("y"))
    make_run(elsewhere, elsewhere.init_org)
    headers = bearer(admin)
    assert kill(api, headers, elsewhere).status_code == 401
    assert set(elsewhere.runs.values_list("status", flat=True)) == {"pending"}
    assert kill(api, headers, task).status_code == 200
    assert set(task.runs.values_list("status", flat=True)) == {"killed by user"}


# --- the token's check: its SQL form against its Python form ---------------------------------------------
def _sql_holds(identity_id: int, claims: dict) -> bool | None:
    condition = current_login_sql(identity_id, claims)
    if condition is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 WHERE {condition[0]}", condition[1])
        return cursor.fetchone() is not None


def _python_passes(identity, claims: dict) -> bool:
    from accounts.authentication import _load_node

    try:
        check_current(_load_node(identity.pk), claims)
    except TokenRevoked:
        return False
    return True


def test_the_sql_form_of_the_token_check_agrees_with_its_python_form(network):
    _, _, node, other_node, _ = network
    claims = decode(bearer(node)["HTTP_AUTHORIZATION"].split()[1])
    ended = decode(bearer(node)["HTTP_AUTHORIZATION"].split()[1])
    LoginSession.objects.filter(pk=ended["sid"]).update(revoked_at=timezone.now())
    other = decode(bearer(other_node)["HTTP_AUTHORIZATION"].split()[1])
    cases = {
        "current": claims,
        "ended login": ended,
        "older generation": {**claims, "gen": claims["gen"] - 1},
        "newer generation": {**claims, "gen": claims["gen"] + 1},
        "unknown login": {**claims, "sid": "e" * 32},
        "another identity's login": {**claims, "sid": other["sid"]},
        "no login": {k: v for k, v in claims.items() if k != "sid"},
        "no generation": {k: v for k, v in claims.items() if k != "gen"},
        "generation not a number": {**claims, "gen": str(claims["gen"])},
        "generation beyond the column": {**claims, "gen": 2**63},
        "login not text": {**claims, "sid": 5},
    }
    outcomes = {name: (_sql_holds(node.pk, case), _python_passes(node, case)) for name, case in cases.items()}
    assert outcomes["current"] == (True, True)
    for name, (sql, python) in outcomes.items():
        # Never looser: where the SQL form cannot tell (None), the caller is loaded and judged in Python.
        assert sql is None or sql == python, (name, sql, python)
        assert sql or not python, (name, sql, python)


def test_a_deferred_caller_is_loaded_with_every_check_when_used(network):
    _, _, node, _, _ = network
    claims = decode(bearer(node)["HTTP_AUTHORIZATION"].split()[1])
    revoke_logins(node)
    with pytest.raises(TokenRevoked):
        DeferredCaller(claims).load()
