"""The permission matrix of the identity endpoints (tokens, users, roles, rules, the audit trail); see
tests/matrix.py."""

# The callables of the table share one signature; not every one needs every argument.
# ruff: noqa: ARG005

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.audit import audit
from accounts.catalogue import RESEARCHER, VIEWER
from accounts.models import AuditAction, AuditEntry, Role, Rule, User
from tests.factories import PASSWORD, make_user
from tests.matrix import (
    ANY_CLIENT,
    Case,
    Context,
    Rules,
    deleted_unless_refused,
    list_case,
    matrix_tests,
    members,
    ok_if,
)

pytestmark = pytest.mark.django_db

# A rule every default role holds, one only Researcher and up hold, one only Collaboration Admin and
# Root hold: enough to tell the escalation guards apart for every role.
EVERYONE = ("organization", "org", "v")
RESEARCHERS = ("task", "col", "c")
COL_ADMINS = ("user", "col", "v")


def rule(key: tuple[str, str, str]) -> Rule:
    from accounts.catalogue import OPERATIONS, SCOPES

    return Rule.objects.get(name=key[0], scope=SCOPES[key[1]], operation=OPERATIONS[key[2]])


def org_role(ctx) -> Role:
    role = Role.objects.create(name=f"custom-{ctx.place}", organization=ctx.org)
    role.rules.add(rule(EVERYONE))
    return role


def org_user(ctx) -> User:
    """A Viewer: changing its roles or rules, or deleting it, needs the Viewer's rules (hold what you
    target)."""
    return make_user(ctx.org, VIEWER)


def org_entry(ctx) -> AuditEntry:
    """An entry about a user of the place's organization, written by the system."""
    audit(None, AuditAction.USER_UPDATE, org_user(ctx))
    return AuditEntry.objects.latest("id")


def user_rows(r: Rules, _place) -> set[str]:
    return r.places("user")


def role_rows(r: Rules, _place) -> set[str]:
    return r.places("role")


def user_create(name: str, role: str, **extra: object) -> Case:
    """Creating a user of the place's organization holding ``role``: a user creation rule reaching the
    place, and holding the role given (hold what you grant)."""
    return Case(
        name, "post", "user", path=lambda ctx: "/api/user",
        body=lambda ctx: {
            "username": f"new{ctx.place}", "email": f"new{ctx.place}@example.org", "password": PASSWORD,
            "organization_id": ctx.org.pk, "roles": [Role.objects.get(name=role).pk],
        },
        status=lambda r, place: ok_if(r.allow_org("user", "create", place) and r.holds_role(role), 201),
        **extra,
    )  # fmt: skip


def lists_by_place(resource: str, target: Callable[[Context], object]) -> list[Case]:
    """The list of ``resource`` filtered by the place's organization (its view rule at organization
    scope or more there) and by its collaboration (the rows of the members the caller's rules reach)."""
    path = f"/api/{resource}?per_page=1000"
    return [
        Case(
            f"{resource} list by organization", "get", resource, target=target,
            path=lambda ctx: f"{path}&organization_id={ctx.org.pk}",
            status=lambda r, place: ok_if(r.allow_org(resource, "view", place)),
            rows=lambda r, place: {place},
        ),
        Case(
            f"{resource} list by collaboration", "get", resource, target=target,
            path=lambda ctx: f"{path}&collaboration_id={ctx.collab.pk}",
            status=lambda r, place: ok_if(r.can_col(resource, "view", place)),
            rows=lambda r, place: members(place) & r.places(resource),
        ),
    ]  # fmt: skip


CASES = [
    # --- tokens: the same for every role ------------------------------------------------------------
    Case(
        "login", "post", "token/user", auth="none", per_place=False,
        path=lambda ctx: "/api/token/user",
        body=lambda ctx: {"username": ctx.caller.username, "password": PASSWORD},
        status=lambda r, _: 200,
    ),
    Case(
        "refresh", "post", "token/refresh", auth="refresh", per_place=False, clients=ANY_CLIENT,
        path=lambda ctx: "/api/token/refresh",
        status=lambda r, _: 422 if r.kind == "container" else 200,  # a container has no refresh token
    ),
    Case(
        "logout", "post", "token/revoke", per_place=False, clients=("user", "node"),
        path=lambda ctx: "/api/token/revoke", status=lambda r, _: 200,
    ),
    Case(
        "validate", "post", "token/user/validate", per_place=False,
        path=lambda ctx: "/api/token/user/validate", status=lambda r, _: 200,
    ),
    Case(
        "password change", "patch", "password/change", per_place=False,
        path=lambda ctx: "/api/password/change",
        body=lambda ctx: {"current_password": PASSWORD, "new_password": "Another1!pass"},
        status=lambda r, _: 200,
    ),
    # --- users ---------------------------------------------------------------------------------------
    list_case("user", org_user, "/api/user?per_page=1000", user_rows),
    *lists_by_place("user", org_user),
    Case(
        "user detail", "get", "user/<pk>", target=org_user,
        path=lambda ctx: f"/api/user/{ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("user", "view", place)),
    ),
    Case(
        "own user detail", "get", "user/<pk>", per_place=False,
        path=lambda ctx: f"/api/user/{ctx.caller.pk}?include_permissions=1", status=lambda r, _: 200,
    ),
    user_create("user create", VIEWER, rules=(("user", "create"),)),
    user_create("user create with a researcher role", RESEARCHER),
    Case(
        "user edit", "patch", "user/<pk>", target=org_user, rules=(("user", "edit"),),
        path=lambda ctx: f"/api/user/{ctx.target.pk}", body=lambda ctx: {"firstname": "Changed"},
        status=lambda r, place: ok_if(r.allow_org("user", "edit", place)),
    ),
    Case(
        "user edit: grant a direct rule", "patch", "user/<pk>", target=org_user,
        path=lambda ctx: f"/api/user/{ctx.target.pk}", body=lambda ctx: {"rules": [rule(COL_ADMINS).pk]},
        status=lambda r, place: ok_if(
            r.allow_org("user", "edit", place) and r.holds([COL_ADMINS]) and r.holds_role(VIEWER)
        ),
    ),
    Case(
        "user edit: assign the researcher role", "patch", "user/<pk>", target=org_user,
        path=lambda ctx: f"/api/user/{ctx.target.pk}",
        body=lambda ctx: {"roles": [Role.objects.get(name=RESEARCHER).pk]},
        status=lambda r, place: ok_if(
            r.allow_org("user", "edit", place) and r.holds_role(RESEARCHER) and r.holds_role(VIEWER)
        ),
    ),
    Case(
        "own user edit", "patch", "user/<pk>", per_place=False,
        path=lambda ctx: f"/api/user/{ctx.caller.pk}", body=lambda ctx: {"lastname": "Myself"},
        status=lambda r, _: ok_if(r.has("user", "own", "edit") or r.allow_org("user", "edit", "own")),
    ),
    Case(
        "own roles edit", "patch", "user/<pk>", per_place=False,
        path=lambda ctx: f"/api/user/{ctx.caller.pk}", body=lambda ctx: {"roles": []},
        status=lambda r, _: 401,
    ),
    Case(
        "user delete", "delete", "user/<pk>", target=org_user, rules=(("user", "delete"),),
        path=lambda ctx: f"/api/user/{ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("user", "delete", place) and r.holds_role(VIEWER)),
        check=deleted_unless_refused(User),
    ),
    Case(
        "own user delete", "delete", "user/<pk>", per_place=False,
        path=lambda ctx: f"/api/user/{ctx.caller.pk}",
        status=lambda r, _: ok_if(r.has("user", "own", "delete") or r.allow_org("user", "delete", "own")),
    ),
    # --- roles ---------------------------------------------------------------------------------------
    Case(
        "role list", "get", "role", target=org_role, per_place=False, rules=(("role", "view"),),
        path=lambda ctx: "/api/role?per_page=1000", status=lambda r, _: 200, rows=role_rows,
    ),
    *lists_by_place("role", org_role),
    Case(
        "role list by user", "get", "role",
        target=lambda ctx: make_user(ctx.org, rules=()),
        path=lambda ctx: f"/api/role?per_page=1000&user_id={ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("role", "view", place)),
    ),
    Case(
        "role detail", "get", "role/<pk>", target=org_role,
        path=lambda ctx: f"/api/role/{ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("role", "view", place)),
    ),
    Case(
        "built-in role detail", "get", "role/<pk>", per_place=False,
        path=lambda ctx: f"/api/role/{Role.objects.get(name=RESEARCHER).pk}",
        status=lambda r, _: ok_if(r.at_least("org", "role", "view")),
    ),
    Case(
        "role create", "post", "role", rules=(("role", "create"),),
        path=lambda ctx: "/api/role",
        body=lambda ctx: {"name": "new", "rules": [rule(EVERYONE).pk], "organization_id": ctx.org.pk},
        status=lambda r, place: ok_if(r.allow_org("role", "create", place), 201),
    ),
    Case(
        "role create with a researcher rule", "post", "role",
        path=lambda ctx: "/api/role",
        body=lambda ctx: {"name": "new", "rules": [rule(RESEARCHERS).pk], "organization_id": ctx.org.pk},
        status=lambda r, place: ok_if(r.allow_org("role", "create", place) and r.holds([RESEARCHERS]), 201),
    ),
    Case(
        "role edit", "patch", "role/<pk>", target=org_role, rules=(("role", "edit"),),
        path=lambda ctx: f"/api/role/{ctx.target.pk}", body=lambda ctx: {"description": "changed"},
        status=lambda r, place: ok_if(r.allow_org("role", "edit", place)),
    ),
    Case(
        "role edit: replace the rules", "patch", "role/<pk>", target=org_role,
        path=lambda ctx: f"/api/role/{ctx.target.pk}", body=lambda ctx: {"rules": [rule(COL_ADMINS).pk]},
        status=lambda r, place: ok_if(r.allow_org("role", "edit", place) and r.holds([COL_ADMINS, EVERYONE])),
    ),
    Case(
        "role delete", "delete", "role/<pk>", target=org_role, rules=(("role", "delete"),),
        path=lambda ctx: f"/api/role/{ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("role", "delete", place)),
        check=deleted_unless_refused(Role),
    ),
    Case(
        "role rule add", "post", "role/<pk>/rule/<rule_id>", target=org_role,
        path=lambda ctx: f"/api/role/{ctx.target.pk}/rule/{rule(RESEARCHERS).pk}",
        status=lambda r, place: ok_if(r.allow_org("role", "edit", place) and r.holds([RESEARCHERS]), 201),
    ),
    Case(
        "role rule remove", "delete", "role/<pk>/rule/<rule_id>", target=org_role,
        path=lambda ctx: f"/api/role/{ctx.target.pk}/rule/{rule(EVERYONE).pk}",
        status=lambda r, place: ok_if(r.allow_org("role", "edit", place) and r.holds([EVERYONE])),
    ),
    # --- rules: readable by every user ------------------------------------------------------------
    Case(
        "rule list", "get", "rule", per_place=False,
        path=lambda ctx: "/api/rule?no_pagination=1", status=lambda r, _: 200,
    ),
    Case(
        "rule detail", "get", "rule/<pk>", per_place=False,
        path=lambda ctx: f"/api/rule/{rule(EVERYONE).pk}", status=lambda r, _: 200,
    ),
    # --- the audit trail: global scope everything, organization scope its organization's entries ----
    list_case("audit", org_entry, "/api/audit?per_page=1000", lambda r, _: r.places("audit")),
    Case(
        "audit list by organization", "get", "audit", target=org_entry,
        path=lambda ctx: f"/api/audit?per_page=1000&organization_id={ctx.org.pk}",
        status=lambda r, _: ok_if(r.max_scope("audit", "view") is not None),
        rows=lambda r, place: {place} & r.places("audit"),
    ),
    Case(
        "audit detail", "get", "audit/<pk>", target=org_entry,
        path=lambda ctx: f"/api/audit/{ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("audit", "view", place)),
    ),
]  # fmt: skip

# Reachable without a token, so no rule is involved: tested in test_recovery.py.
EXEMPT = {
    ("POST", "recover/lost"): "public",
    ("POST", "recover/reset"): "public, needs a mailed token",
    ("POST", "recover/2fa/lost"): "public, needs e-mail",
    ("POST", "recover/2fa/reset"): "public, needs a mailed token",
}


test_matrix, test_every_endpoint_has_a_case, test_every_user_role_and_audit_rule_is_exercised = matrix_tests(
    CASES, "accounts.urls", ["user", "role", "audit"], EXEMPT
)
