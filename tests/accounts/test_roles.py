"""/api/role and /api/role/<id>/rule/<rule_id>: representation, filters, guards, query counts."""

from __future__ import annotations

import pytest

from accounts.catalogue import COL_ADMIN, DEFAULT_ROLE_NAMES, RESEARCHER, ROOT, VIEWER
from accounts.models import Role, Rule
from tests.accounts.test_users import count_queries, ids, role_id, rule_id
from tests.factories import bearer, full_page, make_user

pytestmark = pytest.mark.django_db


def org_role(org, *rule_keys, name: str = "custom") -> Role:
    role = Role.objects.create(name=name, description="d", organization=org)
    role.rules.add(*(Rule.objects.get(pk=rule_id(*key)) for key in rule_keys))
    return role


VIEW_OWN_ORG = ("organization", "ORGANIZATION", "VIEW")


# --- representation and detail ----------------------------------------------------------------------------
def test_role_representation(api, world, admin_a):
    role = org_role(world.org_a, VIEW_OWN_ORG)
    body = api.get(f"/api/role/{role.pk}", **bearer(admin_a)).json()
    assert body == {
        "id": role.pk, "name": "custom", "description": "d", "is_default_role": False,
        "organization": {"id": world.org_a.pk, "link": f"/api/organization/{world.org_a.pk}",
                         "methods": ["GET", "PATCH", "DELETE"]},
        "rules": f"/api/rule?role_id={role.pk}", "users": f"/api/user?role_id={role.pk}",
    }  # fmt: skip
    builtin = api.get(f"/api/role/{role_id(VIEWER)}", **bearer(admin_a)).json()
    assert builtin["organization"] is None and builtin["is_default_role"] is True


def test_a_user_without_role_rules_sees_only_their_own_roles(api, world):
    mine = org_role(world.org_a, VIEW_OWN_ORG, name="mine")
    other = org_role(world.org_a, VIEW_OWN_ORG, name="other")
    user = make_user(world.org_a, "mine")
    assert ids(api.get("/api/role", **bearer(user))) == {mine.pk}
    assert api.get(f"/api/role/{mine.pk}", **bearer(user)).status_code == 200
    assert api.get(f"/api/role/{other.pk}", **bearer(user)).status_code == 401
    assert api.get(f"/api/role/{role_id(VIEWER)}", **bearer(user)).status_code == 401


def test_role_list_shows_builtin_roles_to_role_viewers(api, world):
    viewer = make_user(world.org_a, VIEWER)
    builtin = set(Role.objects.filter(organization__isnull=True).values_list("pk", flat=True))
    assert builtin <= ids(api.get("/api/role?per_page=100", **bearer(viewer)))


def test_role_404(api, admin_a, root):
    # only who views every role learns that an id names none (to others it is any role out of reach)
    assert api.get("/api/role/99999", **bearer(root)).status_code == 404
    assert api.get("/api/role/99999", **bearer(admin_a)).status_code == 401
    assert api.get(f"/api/role/{10**25}", **bearer(admin_a)).status_code == 401


# --- filters -------------------------------------------------------------------------------------------
def test_role_list_filters(api, world, root):
    a = org_role(world.org_a, VIEW_OWN_ORG, name="analysts")
    b = org_role(world.org_b, ("task", "GLOBAL", "VIEW"), name="auditors")
    c = org_role(world.org_c, VIEW_OWN_ORG, name="clerks")
    user = make_user(world.org_b, "auditors")
    headers = bearer(root)
    builtin = set(Role.objects.filter(organization__isnull=True).values_list("pk", flat=True))
    assert ids(api.get(f"/api/role?organization_id={world.org_a.pk}", **headers)) == {a.pk}
    several = f"/api/role?organization_id={world.org_a.pk}&organization_id={world.org_c.pk}&per_page=100"
    assert ids(api.get(several, **headers)) == {a.pk, c.pk}
    with_root = f"/api/role?organization_id={world.org_a.pk}&include_root=1&per_page=100"
    assert ids(api.get(with_root, **headers)) == {a.pk} | builtin
    assert ids(api.get(f"/api/role?collaboration_id={world.collab_ab.pk}", **headers)) == {a.pk, b.pk}
    assert ids(api.get("/api/role?name=an%25&name=cl%25", **headers)) == {a.pk, c.pk}
    assert ids(api.get("/api/role?name=Viewer", **headers)) == {role_id(VIEWER)}
    task_glo_view = rule_id("task", "GLOBAL", "VIEW")
    assert ids(api.get(f"/api/role?rule_id={task_glo_view}", **headers)) == {b.pk, role_id(ROOT)}
    assert ids(api.get(f"/api/role?user_id={user.pk}", **headers)) == {b.pk}
    assert api.get("/api/role?rule_id=99999", **headers).status_code == 404
    assert api.get("/api/role?user_id=99999", **headers).status_code == 400
    assert api.get("/api/role?organization_id=x", **headers).status_code == 400


def test_role_list_of_own_user_needs_no_rule(api, world):
    mine = org_role(world.org_a, VIEW_OWN_ORG, name="mine")
    user = make_user(world.org_a, "mine")
    assert ids(api.get(f"/api/role?user_id={user.pk}", **bearer(user))) == {mine.pk}


# --- create ----------------------------------------------------------------------------------------------
def test_create_role(api, world, admin_a):
    body = {"name": "helpers", "description": "help", "rules": [rule_id(*VIEW_OWN_ORG)]}
    response = api.post("/api/role", body, format="json", **bearer(admin_a))
    assert response.status_code == 201
    role = Role.objects.get(name="helpers")
    assert role.organization_id == world.org_a.pk and not role.is_default_role
    assert list(role.rules.values_list("pk", flat=True)) == [rule_id(*VIEW_OWN_ORG)]
    assert response.json()["id"] == role.pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rules": []}, "name"),
        ({"name": "x"}, "rules"),
        ({"name": "x" * 129, "rules": []}, "name"),
        ({"name": "123", "rules": []}, "name"),
        ({"name": "x", "rules": [], "description": "d" * 1025}, "description"),
        ({"name": "x", "rules": [], "organization_id": "abc"}, "organization_id"),
        *(({"name": name, "rules": []}, "name") for name in DEFAULT_ROLE_NAMES),
    ],
)
def test_create_role_validation_errors_are_keyed_by_field(api, admin_a, body, field):
    response = api.post("/api/role", body, format="json", **bearer(admin_a))
    assert response.status_code == 400
    msg = response.json()["msg"]
    assert isinstance(msg, dict) and field in msg and isinstance(msg[field], list)


@pytest.mark.parametrize("item", ["a", None, 1.5, 2**63, {}, []])
def test_an_invalid_rule_id_is_named_by_its_place_and_reason(api, admin_a, item):
    rule = rule_id(*VIEW_OWN_ORG)
    response = api.post("/api/role", {"name": "x", "rules": [rule, item]}, format="json", **bearer(admin_a))
    assert response.status_code == 400
    # As vantage6's schema errors: the item's index, then what is wrong with it.
    [reason] = response.json()["msg"]["rules"]["1"]
    assert reason and not reason.isdigit()
    assert not Role.objects.filter(name="x").exists()


def test_create_role_unknown_rule_or_organization(api, root):
    assert (
        api.post("/api/role", {"name": "x", "rules": [99999]}, format="json", **bearer(root)).status_code
        == 404
    )
    body = {"name": "x", "rules": [], "organization_id": 99999}
    assert api.post("/api/role", body, format="json", **bearer(root)).status_code == 404


def test_create_role_escalation_names_the_missing_rule(api, admin_a):
    body = {"name": "x", "rules": [rule_id("node", "GLOBAL", "DELETE")]}
    response = api.post("/api/role", body, format="json", **bearer(admin_a))
    assert response.status_code == 401
    assert response.json() == {"msg": "You don't have the rule (node, global, delete)"}
    assert not Role.objects.filter(name="x").exists()


# --- edit and delete ---------------------------------------------------------------------------------------
def test_edit_role_client_style_nulls(api, world, admin_a):
    role = org_role(world.org_a, VIEW_OWN_ORG)
    body = {"name": None, "description": None, "rules": [rule_id("user", "ORGANIZATION", "VIEW")]}
    response = api.patch(f"/api/role/{role.pk}", body, format="json", **bearer(admin_a))
    assert response.status_code == 200
    role.refresh_from_db()
    assert role.name == "custom" and role.description == "d"
    assert list(role.rules.values_list("pk", flat=True)) == [rule_id("user", "ORGANIZATION", "VIEW")]


def test_edit_role_refusals(api, world, admin_a):
    role = org_role(world.org_a, VIEW_OWN_ORG)
    patch = lambda body: api.patch(f"/api/role/{role.pk}", body, format="json", **bearer(admin_a))  # noqa: E731
    assert patch({"organization_id": world.org_b.pk}).status_code == 400
    assert patch({"name": VIEWER}).status_code == 400
    assert patch({"rules": [99999]}).status_code == 404
    assert patch({"rules": [rule_id("task", "GLOBAL", "VIEW")]}).status_code == 401


def test_dropping_a_rule_the_editor_lacks_is_refused(api, world, admin_a):
    role = org_role(world.org_a, VIEW_OWN_ORG, ("task", "GLOBAL", "VIEW"))
    response = api.patch(
        f"/api/role/{role.pk}", {"rules": [rule_id(*VIEW_OWN_ORG)]}, format="json", **bearer(admin_a)
    )
    assert response.status_code == 401
    assert role.rules.count() == 2


@pytest.mark.parametrize("name", DEFAULT_ROLE_NAMES)
def test_builtin_roles_are_immutable(api, root, name):
    pk = Role.objects.get(name=name, is_default_role=True).pk
    headers = bearer(root)
    assert api.patch(f"/api/role/{pk}", {"description": "x"}, format="json", **headers).status_code == 400
    assert api.delete(f"/api/role/{pk}", **headers).status_code == 400
    some_rule = rule_id("task", "GLOBAL", "VIEW")
    assert api.post(f"/api/role/{pk}/rule/{some_rule}", **headers).status_code == 400
    assert api.delete(f"/api/role/{pk}/rule/{some_rule}", **headers).status_code == 400
    assert Role.objects.filter(pk=pk, is_default_role=True).exists()


def test_delete_role_held_by_users_needs_delete_dependents(api, world, admin_a):
    role = org_role(world.org_a, VIEW_OWN_ORG)
    holder = make_user(world.org_a, "custom")
    assert api.delete(f"/api/role/{role.pk}", **bearer(admin_a)).status_code == 400
    response = api.delete(f"/api/role/{role.pk}?delete_dependents=1", **bearer(admin_a))
    assert response.status_code == 200
    assert response.json() == {"msg": "Role removed from the database."}
    assert holder.roles.count() == 0


# --- role/<id>/rule/<rule_id> ---------------------------------------------------------------------------
def test_add_and_remove_a_rule(api, world, admin_a):
    role = org_role(world.org_a, VIEW_OWN_ORG)
    extra = rule_id("user", "ORGANIZATION", "VIEW")
    added = api.post(f"/api/role/{role.pk}/rule/{extra}", **bearer(admin_a))
    assert added.status_code == 201
    assert [r["id"] for r in added.json()] == sorted([rule_id(*VIEW_OWN_ORG), extra])
    removed = api.delete(f"/api/role/{role.pk}/rule/{extra}", **bearer(admin_a))
    assert removed.status_code == 200
    assert [r["id"] for r in removed.json()] == [rule_id(*VIEW_OWN_ORG)]
    assert api.delete(f"/api/role/{role.pk}/rule/{extra}", **bearer(admin_a)).status_code == 404
    assert api.post(f"/api/role/{role.pk}/rule/99999", **bearer(admin_a)).status_code == 404
    assert api.post(f"/api/role/99999/rule/{extra}", **bearer(admin_a)).status_code == 401


# --- query counts ------------------------------------------------------------------------------------------
# Loading the caller with its rules and collaborations (and their members), its role ids, the page (with
# the number of all rows).
ROLE_LIST_QUERIES = {VIEWER: 3, COL_ADMIN: 3, ROOT: 2}


@pytest.mark.parametrize("role", [VIEWER, COL_ADMIN, ROOT])
def test_role_list_query_count_is_fixed(api, world, role):
    caller = make_user(world.org_a, role)
    headers = bearer(caller)
    api.get("/api/role", **headers)
    few = count_queries(api, "/api/role?per_page=1", headers)
    for org in (world.org_a, world.org_b, world.org_c):
        for n in range(5):
            org_role(org, VIEW_OWN_ORG, ("user", "ORGANIZATION", "VIEW"), name=f"r{n}")
    caller.roles.add(*Role.objects.filter(organization=world.org_a))
    many = count_queries(api, full_page(api, "/api/role", headers), headers)
    assert few == many == ROLE_LIST_QUERIES[role]


# The caller, then the page (with the number of all rows); filtered, the role's existence check, the
# page and the count.
# ?role_id= adds the role and the caller's roles (may it view the role?).
RULE_LIST_QUERIES = {"/api/rule?per_page=1": 2, "/api/rule?no_pagination=1": 2, "/api/rule?role_id=1": 5}


@pytest.mark.parametrize("path", RULE_LIST_QUERIES)
def test_rule_list_query_count_is_fixed(api, world, path, django_assert_num_queries):
    caller = make_user(world.org_a, VIEWER, RESEARCHER, COL_ADMIN)
    headers = bearer(caller)
    api.get("/api/rule", **headers)
    with django_assert_num_queries(RULE_LIST_QUERIES[path]):
        api.get(path, **headers)
