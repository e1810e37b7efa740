"""/api/user: representation, filters, create/edit/delete with their guards, query counts."""

from __future__ import annotations

from datetime import datetime

import pytest

from accounts.catalogue import COL_ADMIN, ORG_ADMIN, RESEARCHER, ROOT, VIEWER
from accounts.models import Role, Rule, User
from nodes.events import event_emitted
from tasks.models import Task
from tests.factories import PASSWORD, bearer, full_page, make_org, make_task, make_user

pytestmark = pytest.mark.django_db


def rule_id(name: str, scope: str, operation: str) -> int:
    return Rule.objects.get(name=name, scope=scope, operation=operation).pk


def role_id(name: str) -> int:
    return Role.objects.get(name=name, is_default_role=True).pk


def new_user_body(username: str = "bob", **extra) -> dict:
    return {"username": username, "email": f"{username}@example.org", "password": PASSWORD, **extra}


# --- representation ---------------------------------------------------------------------------------------
def test_user_representation(api, world, root):
    user = make_user(world.org_a, VIEWER, username="carol")
    User.objects.filter(pk=user.pk).update(otp_secret="A" * 32, last_seen=datetime(2024, 1, 2, 3, 4, 5))
    body = api.get(f"/api/user/{user.pk}", **bearer(root)).json()
    assert body == {
        "id": user.pk, "type": "user", "ip": None, "last_seen": "2024-01-02T03:04:05", "status": None,
        "username": "carol", "firstname": "", "lastname": "", "email": "carol@example.org",
        "otp_secret": None, "last_email_failed_login_sent": None, "last_email_recover_password_sent": None,
        "organization": {"id": world.org_a.pk, "link": f"/api/organization/{world.org_a.pk}",
                         "methods": ["GET", "PATCH", "DELETE"]},
        "roles": f"/api/role?user_id={user.pk}", "rules": f"/api/rule?user_id={user.pk}",
    }  # fmt: skip


def test_include_permissions(api, world):
    user = make_user(world.org_a, VIEWER, rules=[Rule.objects.get(pk=rule_id("task", "GLOBAL", "VIEW"))])
    body = api.get(f"/api/user/{user.pk}?include_permissions=true", **bearer(user)).json()
    viewer_rules = set(Role.objects.get(pk=role_id(VIEWER)).rules.values_list("id", flat=True))
    assert body["permissions"] == {
        "roles": [role_id(VIEWER)],
        "rules": sorted(viewer_rules | {rule_id("task", "GLOBAL", "VIEW")}),
        "orgs_in_collabs": sorted([world.org_a.pk, world.org_b.pk]),
    }


def test_user_detail_404(api, admin_a):
    for pk in (999999, 10**30):
        response = api.get(f"/api/user/{pk}", **bearer(admin_a))
        assert response.status_code == 401  # as a user out of reach
        assert "msg" in response.json()


# --- list filters -------------------------------------------------------------------------------------------
def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["data"]}


def test_user_list_like_filters(api, world, root):
    a = make_user(world.org_a, VIEWER, username="ann_smith")
    b = make_user(world.org_b, VIEWER, username="anna")
    User.objects.filter(pk=b.pk).update(firstname="Anna", lastname="Jones")
    headers = bearer(root)
    assert ids(api.get("/api/user?username=ann%25&per_page=100", **headers)) == {a.pk, b.pk}
    assert ids(api.get("/api/user?username=ann_&per_page=100", **headers)) == {b.pk}
    assert ids(api.get("/api/user?firstname=Anna", **headers)) == {b.pk}
    assert ids(api.get("/api/user?lastname=J%25", **headers)) == {b.pk}
    assert ids(api.get(f"/api/user?email={a.email}", **headers)) == {a.pk}


def test_user_list_by_role_and_rule(api, world, root):
    researcher = make_user(world.org_b, RESEARCHER)
    extra = Rule.objects.get(pk=rule_id("task", "GLOBAL", "VIEW"))
    direct = make_user(world.org_c, VIEWER, rules=[extra])
    headers = bearer(root)
    assert ids(api.get(f"/api/user?role_id={role_id(RESEARCHER)}", **headers)) == {researcher.pk}
    assert ids(api.get(f"/api/user?rule_id={extra.pk}", **headers)) == {direct.pk}
    assert api.get("/api/user?role_id=99999", **headers).status_code == 400
    assert api.get("/api/user?rule_id=99999", **headers).status_code == 400


def test_user_list_by_role_of_another_organization_needs_view_there(api, world):
    viewer = make_user(world.org_a, VIEWER)
    foreign = Role.objects.create(name="foreign", organization=world.org_c)
    assert api.get(f"/api/user?role_id={foreign.pk}", **bearer(viewer)).status_code == 401


def test_user_list_by_last_seen(api, world, root):
    early = make_user(world.org_a, VIEWER)
    late = make_user(world.org_a, VIEWER)
    User.objects.filter(pk=early.pk).update(last_seen=datetime(2024, 1, 1, 12))
    User.objects.filter(pk=late.pk).update(last_seen=datetime(2024, 3, 1, 23, 59))
    headers = bearer(root)
    assert ids(api.get("/api/user?last_seen_till=2024-01-01", **headers)) == {early.pk}
    found = ids(api.get("/api/user?last_seen_from=2024-02-01&last_seen_till=2024-03-01", **headers))
    assert found == {late.pk}
    assert api.get("/api/user?last_seen_from=yesterday", **headers).status_code == 400


def test_without_a_view_rule_a_user_finds_only_themself_by_username(api, world):
    lonely = make_user(world.org_a, username="lonely")  # no roles at all
    assert api.get("/api/user", **bearer(lonely)).status_code == 401
    assert ids(api.get("/api/user?username=lonely", **bearer(lonely))) == {lonely.pk}
    assert api.get("/api/user?username=someone", **bearer(lonely)).status_code == 401
    assert api.get(f"/api/user/{lonely.pk}", **bearer(lonely)).status_code == 200


@pytest.mark.parametrize("query", ["organization_id=x", "collaboration_id=1.5", "page=0", "sort=password2"])
def test_user_list_malformed_query_is_a_400(api, root, query):
    assert api.get(f"/api/user?{query}", **bearer(root)).status_code == 400


# --- create ---------------------------------------------------------------------------------------------
def test_create_user_in_own_organization(api, world, admin_a):
    body = new_user_body(roles=[role_id(VIEWER)], rules=[rule_id("user", "ORGANIZATION", "VIEW")])
    response = api.post("/api/user", body, format="json", **bearer(admin_a))
    assert response.status_code == 201, response.content
    created = User.objects.get(username="bob")
    assert response.json()["id"] == created.pk
    assert created.organization_id == world.org_a.pk
    assert created.firstname == "" and created.lastname == ""
    assert created.password.startswith("$2") and created.check_password(PASSWORD)
    assert list(created.roles.values_list("name", flat=True)) == [VIEWER]
    assert "password" not in response.json()


@pytest.mark.usefixtures("world")
def test_create_user_client_style_nulls(api, admin_a):
    body = new_user_body(firstname=None, lastname=None, organization_id=None, roles=None, rules=None)
    response = api.post("/api/user", body, format="json", **bearer(admin_a))
    assert response.status_code == 201, response.content


def test_create_user_skips_unknown_roles_and_rules(api, admin_a):
    body = new_user_body(roles=[role_id(VIEWER), 99999], rules=[99999])
    response = api.post("/api/user", body, format="json", **bearer(admin_a))
    assert response.status_code == 201
    assert User.objects.get(username="bob").roles.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "ab"}, "username"),
        ({"username": "1abc"}, "username"),
        ({"username": "with space"}, "username"),
        ({"email": "nope"}, "email"),
        ({"password": "weak"}, "password"),
        ({"firstname": "x" * 129}, "firstname"),
        ({"roles": "1"}, "roles"),
        ({"roles": ["x"]}, "roles"),
        ({"organization_id": 10**20}, "organization_id"),
        ({"organization_id": "abc"}, "organization_id"),
    ],
)
def test_create_user_validation(api, admin_a, change, field):
    response = api.post("/api/user", {**new_user_body(), **change}, format="json", **bearer(admin_a))
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not User.objects.filter(email="bob@example.org").exists()


@pytest.mark.parametrize("body", [[], "text", 5, None])
def test_create_user_with_a_non_object_body(api, admin_a, body):
    assert api.post("/api/user", body, format="json", **bearer(admin_a)).status_code == 400


def test_create_user_duplicates(api, admin_a):
    assert api.post("/api/user", new_user_body(), format="json", **bearer(admin_a)).status_code == 201
    again = api.post("/api/user", new_user_body(), format="json", **bearer(admin_a))
    assert again.status_code == 400 and again.json() == {"msg": "username already exists."}
    other_name = {**new_user_body(), "username": "bobby"}
    again = api.post("/api/user", other_name, format="json", **bearer(admin_a))
    assert again.status_code == 400 and again.json() == {"msg": "email already exists."}


def test_create_user_in_missing_organization(api, root, admin_a):
    body = new_user_body(organization_id=99999)
    assert api.post("/api/user", body, format="json", **bearer(root)).status_code == 404
    assert api.post("/api/user", body, format="json", **bearer(admin_a)).status_code == 401


def test_create_user_with_a_role_of_another_organization_is_refused(api, world, root):
    foreign = Role.objects.create(name="foreign", organization=world.org_b)
    body = new_user_body(organization_id=world.org_a.pk, roles=[foreign.pk])
    response = api.post("/api/user", body, format="json", **bearer(root))
    assert response.status_code == 401
    assert not User.objects.filter(username="bob").exists()


def test_create_user_escalation_names_the_missing_rule(api, admin_a):
    body = new_user_body(rules=[rule_id("user", "GLOBAL", "VIEW")])
    response = api.post("/api/user", body, format="json", **bearer(admin_a))
    assert response.status_code == 401
    assert response.json() == {"msg": "You don't have the rule (user, global, view)"}


# --- edit -----------------------------------------------------------------------------------------------
def test_edit_user(api, world, admin_a):
    target = make_user(world.org_a, VIEWER)
    body = {"firstname": "New", "lastname": "Name", "email": "new@example.org"}
    response = api.patch(f"/api/user/{target.pk}", body, format="json", **bearer(admin_a))
    assert response.status_code == 200
    target.refresh_from_db()
    assert (target.firstname, target.lastname, target.email) == ("New", "Name", "new@example.org")


def test_edit_user_password_is_refused(api, world):
    target = make_user(world.org_a, VIEWER)
    response = api.patch(
        f"/api/user/{target.pk}", {"password": "Other1!pass"}, format="json", **bearer(target)
    )
    assert response.status_code == 400
    assert response.json() == {"msg": "You cannot change your password here!"}


def test_only_the_user_changes_their_username(api, world, admin_a):
    target = make_user(world.org_a, VIEWER)
    other = api.patch(f"/api/user/{target.pk}", {"username": "renamed"}, format="json", **bearer(admin_a))
    assert other.status_code == 400
    own = api.patch(f"/api/user/{target.pk}", {"username": "renamed"}, format="json", **bearer(target))
    assert own.status_code == 200
    taken = api.patch(f"/api/user/{admin_a.pk}", {"username": "renamed"}, format="json", **bearer(admin_a))
    assert taken.status_code == 400 and taken.json() == {"msg": "username already exists."}


def test_own_roles_and_rules_cannot_be_changed(api, admin_a):
    for body in ({"roles": [role_id(ORG_ADMIN)]}, {"rules": []}):
        response = api.patch(f"/api/user/{admin_a.pk}", body, format="json", **bearer(admin_a))
        assert response.status_code == 401


def test_edit_user_roles_replaces_the_set(api, world):
    col_admin = make_user(world.org_a, COL_ADMIN)
    target = make_user(world.org_a, VIEWER)
    own_role = Role.objects.create(name="helpers", organization=world.org_a)
    body = {"roles": [role_id(RESEARCHER), own_role.pk]}
    response = api.patch(f"/api/user/{target.pk}", body, format="json", **bearer(col_admin))
    assert response.status_code == 200
    assert set(target.roles.values_list("pk", flat=True)) == {role_id(RESEARCHER), own_role.pk}


def test_removing_a_role_needs_its_rules(api, world, admin_a):
    target = make_user(world.org_a, RESEARCHER)  # task.col.create is not held by an organization admin
    response = api.patch(f"/api/user/{target.pk}", {"roles": []}, format="json", **bearer(admin_a))
    assert response.status_code == 401
    msg = f"User id={target.pk} holds the rule (task, collaboration, create) that you don't have"
    assert response.json() == {"msg": msg}
    assert target.roles.count() == 1


def test_removing_a_direct_rule_needs_it(api, world, admin_a):
    extra = Rule.objects.get(pk=rule_id("task", "GLOBAL", "VIEW"))
    target = make_user(world.org_a, VIEWER, rules=[extra])
    response = api.patch(f"/api/user/{target.pk}", {"rules": []}, format="json", **bearer(admin_a))
    assert response.status_code == 401
    assert target.rules.count() == 1


def test_assigning_a_role_of_another_organization_is_refused(api, world, root):
    target = make_user(world.org_a, VIEWER)
    foreign = Role.objects.create(name="foreign", organization=world.org_b)
    response = api.patch(f"/api/user/{target.pk}", {"roles": [foreign.pk]}, format="json", **bearer(root))
    assert response.status_code == 401


def test_edit_user_unknown_role_or_rule_is_a_404(api, world, admin_a):
    target = make_user(world.org_a, VIEWER)
    # rules are public; a role the caller does not view is unknown, and unknown the same 401
    for body, status in (({"roles": [99999]}, 401), ({"rules": [99999]}, 404)):
        response = api.patch(f"/api/user/{target.pk}", body, format="json", **bearer(admin_a))
        assert response.status_code == status


def test_moving_a_user_needs_global_edit(api, world, admin_a, root):
    target = make_user(world.org_a, VIEWER)
    body = {"organization_id": world.org_b.pk}
    assert api.patch(f"/api/user/{target.pk}", body, format="json", **bearer(admin_a)).status_code == 401
    assert api.patch(f"/api/user/{target.pk}", body, format="json", **bearer(root)).status_code == 200
    target.refresh_from_db()
    assert target.organization_id == world.org_b.pk


# --- delete ----------------------------------------------------------------------------------------------
def test_delete_user(api, world, admin_a):
    target = make_user(world.org_a, VIEWER)
    response = api.delete(f"/api/user/{target.pk}", **bearer(admin_a))
    assert response.status_code == 200
    assert response.json() == {"msg": f"user id={target.pk} is removed from the database"}
    assert not User.objects.filter(pk=target.pk).exists()


def test_delete_user_with_tasks_needs_delete_dependents(
    api, world, admin_a, django_capture_on_commit_callbacks
):
    target = make_user(world.org_a, VIEWER)  # once a researcher: its tasks remain
    task = make_task(world.collab_ab, world.org_a, world.org_a, init_user=target)
    other = make_task(world.collab_ab, world.org_a, world.org_a)
    refused = api.delete(f"/api/user/{target.pk}", **bearer(admin_a))
    assert refused.status_code == 400
    assert User.objects.filter(pk=target.pk).exists()
    subtask = make_task(world.collab_ab, world.org_a, world.org_b, init_user=target, parent=task)
    sent = []
    event_emitted.connect(lambda **kw: sent.append(kw["event"]), weak=False, dispatch_uid="user-delete")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            done = api.delete(f"/api/user/{target.pk}?delete_dependents=true", **bearer(admin_a))
    finally:
        event_emitted.disconnect(dispatch_uid="user-delete")
    assert done.status_code == 200
    assert not Task.objects.filter(pk__in=[task.pk, subtask.pk]).exists()
    assert Task.objects.filter(pk=other.pk).exists()
    assert "kill_containers" in sent  # the open runs were stopped


# --- query counts ------------------------------------------------------------------------------------------
def count_queries(api, path: str, headers: dict) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert api.get(path, **headers).status_code == 200
    return len(queries)


# Loading the caller with its rules and collaborations (and their members), and the page (with the
# number of all rows).
USER_LIST_QUERIES = {ORG_ADMIN: 2, COL_ADMIN: 2, ROOT: 2}


@pytest.mark.parametrize("role", [ORG_ADMIN, COL_ADMIN, ROOT])
def test_user_list_query_count_is_fixed(api, world, role):
    caller = make_user(world.org_a, role)
    headers = bearer(caller)
    api.get("/api/user", **headers)  # the first call of a token also records last_seen
    few = count_queries(api, "/api/user?per_page=1", headers)
    for org in (world.org_a, world.org_b, world.org_c):
        for _ in range(4):
            make_user(org, VIEWER, RESEARCHER, COL_ADMIN, rules=Rule.objects.all()[:3])
    many = count_queries(api, full_page(api, "/api/user", headers), headers)
    assert few == many == USER_LIST_QUERIES[role]


def test_user_detail_with_permissions_query_count(api, world, django_assert_num_queries):
    user = make_user(world.org_a, VIEWER, RESEARCHER, ORG_ADMIN)
    headers = bearer(user)
    api.get(f"/api/user/{user.pk}", **headers)
    # caller with its rules; roles, rules and collaborating organizations of the shown user
    with django_assert_num_queries(4):
        assert api.get(f"/api/user/{user.pk}?include_permissions=1", **headers).status_code == 200


def test_a_new_organization_only_sees_itself(api):
    org = make_org()
    admin = make_user(org, COL_ADMIN)
    assert ids(api.get("/api/user", **bearer(admin))) == {admin.pk}
