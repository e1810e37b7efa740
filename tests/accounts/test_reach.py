"""Nobody reaches past their rights: hold what you target (API and admin), the takeover chain up to
root, whose rules may be read, and one answer per scope question."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.catalogue import COL_ADMIN, ROOT, VIEWER
from accounts.models import AuditAction, AuditEntry, Role, Rule, User
from tests.factories import PASSWORD, bearer, make_org, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Taken0ver!pass"


def rule_id(name: str, scope: str, operation: str) -> int:
    return Rule.objects.get(name=name, scope=scope, operation=operation).pk


def role_id(name: str) -> int:
    return Role.objects.get(name=name, is_default_role=True).pk


def snapshot(user: User) -> tuple:
    user = User.objects.get(pk=user.pk)
    return (
        user.username,
        user.email,
        user.password,
        user.organization_id,
        sorted(user.roles.values_list("pk", flat=True)),
        sorted(user.rules.values_list("pk", flat=True)),
    )


@pytest.fixture
def col_admin(world):
    return make_user(world.org_a, COL_ADMIN, username="coladmin")


@pytest.fixture
def root(db):  # noqa: ARG001 - needs the database
    return make_user(make_org("root"), ROOT, username="root")


# --- hold what you target, through the API ---------------------------------------------------------------
def _attacks() -> list:
    return [
        pytest.param("patch", {"email": "attacker@example.org"}, id="email"),
        pytest.param("patch", lambda: {"roles": [role_id(COL_ADMIN), role_id(VIEWER)]}, id="add-a-held-role"),
        pytest.param(
            "patch", lambda: {"rules": [rule_id("organization", "ORGANIZATION", "VIEW")]}, id="rules"
        ),
        pytest.param("delete", None, id="delete"),
    ]


@pytest.mark.parametrize(("method", "body"), _attacks())
def test_an_organization_admin_cannot_touch_a_more_privileged_user(api, admin_a, col_admin, method, body):
    before = snapshot(col_admin)
    body = body() if callable(body) else body
    kwargs = {"data": body, "format": "json"} if body is not None else {}
    response = getattr(api, method)(f"/api/user/{col_admin.pk}", **kwargs, **bearer(admin_a))
    assert response.status_code == 401
    assert response.json()["msg"].startswith(f"User id={col_admin.pk} holds the rule (")
    assert snapshot(col_admin) == before
    assert not AuditEntry.objects.filter(object_type="user", object_id=col_admin.pk).exists()


def test_names_are_not_guarded_and_less_privileged_users_stay_editable(api, world, admin_a, col_admin):
    response = api.patch(
        f"/api/user/{col_admin.pk}", {"firstname": "Renamed"}, format="json", **bearer(admin_a)
    )
    assert response.status_code == 200
    viewer = make_user(world.org_a, VIEWER)
    response = api.patch(
        f"/api/user/{viewer.pk}", {"email": "new@example.org"}, format="json", **bearer(admin_a)
    )
    assert response.status_code == 200
    assert User.objects.get(pk=viewer.pk).email == "new@example.org"
    assert api.delete(f"/api/user/{viewer.pk}", **bearer(admin_a)).status_code == 200


# --- hold what you target, through the admin as a browser ---------------------------------------------------
def browser_login(user: User) -> Client:
    """A browser session: the login form with its CSRF token, then the session cookie."""
    browser = Client(enforce_csrf_checks=True)
    browser.get("/admin/login/")
    response = browser.post(
        "/admin/login/?next=/admin/",
        {
            "username": user.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302, response.content.decode()[:500]
    return browser


def admin_password_change(browser: Client, user: User) -> object:
    page = browser.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    form = {
        "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
        "username": user.username, "email": user.email, "firstname": user.firstname,
        "lastname": user.lastname, "organization": user.organization_id, "new_password": NEW_PASSWORD,
        "roles": list(user.roles.values_list("pk", flat=True)),
        "rules": list(user.rules.values_list("pk", flat=True)),
    }  # fmt: skip
    return browser.post(f"/admin/accounts/user/{user.pk}/change/", form)


def test_the_admin_password_field_obeys_hold_what_you_target(admin_a, col_admin):
    before = snapshot(col_admin)
    response = admin_password_change(browser_login(admin_a), col_admin)
    assert response.status_code == 200  # the form again, with the refusal
    assert f"User id={col_admin.pk} holds the rule (" in response.content.decode()
    assert snapshot(col_admin) == before
    assert not User.objects.get(pk=col_admin.pk).check_password(NEW_PASSWORD)
    assert not AuditEntry.objects.filter(object_type="user", object_id=col_admin.pk).exists()


def test_the_admin_password_field_sets_a_password_with_an_audit_record(world, admin_a):
    viewer = make_user(world.org_a, VIEWER)
    response = admin_password_change(browser_login(admin_a), viewer)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=viewer.pk).check_password(NEW_PASSWORD)
    entry = AuditEntry.objects.get(action="user.password_set")
    assert (entry.actor_type, entry.actor_id, entry.object_id) == ("user", admin_a.pk, viewer.pk)


def test_the_admin_does_not_offer_to_delete_a_more_privileged_user(admin_a, col_admin):
    browser = browser_login(admin_a)
    assert browser.get(f"/admin/accounts/user/{col_admin.pk}/delete/").status_code == 403
    response = browser.post(
        f"/admin/accounts/user/{col_admin.pk}/delete/",
        {"post": "yes", "csrfmiddlewaretoken": browser.cookies["csrftoken"].value},
    )
    assert response.status_code == 403
    assert User.objects.filter(pk=col_admin.pk).exists()


# --- the takeover chain: Organization Admin -> Collaboration Admin -> root ------------------------------
def test_an_organization_admin_cannot_climb_to_root(api, world, admin_a, col_admin, root):
    chain_before = {user.pk: snapshot(user) for user in (col_admin, root)}

    # Step 1: the Organization Admin takes over the Collaboration Admin of its organization.
    for body in ({"email": "attacker@example.org"}, {"rules": [rule_id("user", "ORGANIZATION", "VIEW")]}):
        assert (
            api.patch(f"/api/user/{col_admin.pk}", body, format="json", **bearer(admin_a)).status_code == 401
        )
    assert admin_password_change(browser_login(admin_a), col_admin).status_code == 200

    # Step 2: the Collaboration Admin cannot bring root's organization into its collaboration...
    added = api.post(
        f"/api/collaboration/{world.collab_ab.pk}/organization",
        {"id": root.organization_id}, format="json", **bearer(col_admin),
    )  # fmt: skip
    assert added.status_code == 401
    # ...and when it is a member anyway, reaches root's account with its collaboration-scope user
    # rules, but may not take it over.
    world.collab_ab.organizations.add(root.organization_id)
    assert api.get(f"/api/user/{root.pk}", **bearer(col_admin)).status_code == 200
    for body in (
        {"email": "attacker@example.org"},
        {"roles": [role_id(ROOT), role_id(VIEWER)]},
        {"rules": [rule_id("user", "COLLABORATION", "VIEW")]},
        {"roles": []},
    ):
        response = api.patch(f"/api/user/{root.pk}", body, format="json", **bearer(col_admin))
        assert response.status_code == 401, body
    assert api.delete(f"/api/user/{root.pk}", **bearer(col_admin)).status_code == 401
    browser = browser_login(col_admin)
    assert admin_password_change(browser, root).status_code == 200
    assert browser.get(f"/admin/accounts/user/{root.pk}/delete/").status_code == 403

    assert {user.pk: snapshot(user) for user in (col_admin, root)} == chain_before
    assert User.objects.get(pk=root.pk).check_password(PASSWORD)
    changes = AuditEntry.objects.exclude(action=AuditAction.USER_LOGIN)  # the logins above are recorded
    assert not changes.filter(object_type="user", object_id__in=list(chain_before)).exists()


# --- whose rules may be read ------------------------------------------------------------------------------
def test_the_rules_of_a_user_need_the_right_to_view_that_user(api, world):
    viewer = make_user(world.org_a, VIEWER)
    colleague, stranger = make_user(world.org_a, VIEWER), make_user(world.org_c, ROOT)
    headers = bearer(viewer)
    assert api.get(f"/api/rule?user_id={colleague.pk}", **headers).status_code == 200
    assert api.get(f"/api/rule?user_id={viewer.pk}", **headers).status_code == 200
    refused = api.get(f"/api/rule?user_id={stranger.pk}", **headers)
    missing = api.get("/api/rule?user_id=99999", **headers)
    assert (
        (refused.status_code, refused.json())
        == (401, missing.json())
        == (missing.status_code, missing.json())
    )
    rootish = make_user(world.org_c, ROOT)
    assert api.get("/api/rule?user_id=99999", **bearer(rootish)).status_code == 400


def test_the_roles_of_a_user_tell_nothing_about_unknown_ids(api, world):
    viewer = make_user(world.org_a, VIEWER)
    stranger = make_user(world.org_c, VIEWER)
    refused = api.get(f"/api/role?user_id={stranger.pk}", **bearer(viewer))
    missing = api.get("/api/role?user_id=99999", **bearer(viewer))
    assert (refused.status_code, refused.json()) == (missing.status_code, missing.json())
    assert refused.status_code == 401


# --- one answer per scope question ---------------------------------------------------------------------
def _lonely_caller(resource: str) -> tuple:
    """A user whose only rule is the collaboration-scope view of ``resource``, in an organization
    that is in no collaboration, and its headers."""
    lonely = make_org("lonely")
    role = Role.objects.create(name="col viewer", organization=lonely)
    role.rules.add(rule_id(resource, "COLLABORATION", "VIEW"))
    caller = make_user(lonely, "col viewer")
    return lonely, caller, bearer(caller)


@pytest.mark.parametrize(
    ("resource", "own_row"),
    [
        ("user", lambda org: make_user(org)),
        ("organization", lambda org: org),
        ("role", lambda org: Role.objects.create(name="another", organization=org)),
    ],
)
def test_collaboration_scope_alone_covers_the_own_organization_in_list_and_detail(api, resource, own_row):
    lonely, _caller, headers = _lonely_caller(resource)
    row = own_row(lonely)
    listed = {item["id"] for item in api.get(f"/api/{resource}?per_page=100", **headers).json()["data"]}
    assert row.pk in listed
    assert api.get(f"/api/{resource}/{row.pk}", **headers).status_code == 200


def test_collaboration_scope_alone_sees_own_organizations_users_by_every_path(api):
    lonely, caller, headers = _lonely_caller("user")
    colleague = make_user(lonely)
    listed = {row["id"] for row in api.get("/api/user?per_page=100", **headers).json()["data"]}
    assert listed == {caller.pk, colleague.pk}
    by_org = api.get(f"/api/user?organization_id={lonely.pk}", **headers)
    assert by_org.status_code == 200 and {row["id"] for row in by_org.json()["data"]} == listed
    assert api.get(f"/api/rule?user_id={colleague.pk}", **headers).status_code == 200


def test_the_admin_bulk_delete_leaves_a_more_privileged_user(world, admin_a, col_admin):
    viewer = make_user(world.org_a, VIEWER)
    browser = browser_login(admin_a)
    response = browser.post(
        "/admin/accounts/user/",
        {
            "action": "delete_selected", "post": "yes", "_selected_action": [col_admin.pk, viewer.pk],
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
        },
    )  # fmt: skip
    assert response.status_code == 403
    assert User.objects.filter(pk__in=[col_admin.pk, viewer.pk]).count() == 2


def test_deleting_a_role_needs_its_rules(api, world, admin_a, col_admin):
    """Deleting a role takes it from its users: as for taking it from one user, its rules are needed."""
    role = Role.objects.create(name="collaboration helpers", organization=world.org_a)
    role.rules.add(rule_id("user", "COLLABORATION", "EDIT"))
    col_admin.roles.add(role)
    response = api.delete(f"/api/role/{role.pk}?delete_dependents=1", **bearer(admin_a))
    assert response.status_code == 401
    assert response.json() == {"msg": "You don't have the rule (user, collaboration, edit)"}
    assert browser_login(admin_a).get(f"/admin/accounts/role/{role.pk}/delete/").status_code == 403
    assert col_admin.roles.filter(pk=role.pk).exists()
