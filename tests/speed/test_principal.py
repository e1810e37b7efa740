"""The caller and its rules load in one query, and a change of rules counts from the very next request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.authentication import principal_from_claims
from accounts.models import Role, Rule
from accounts.permissions import Principal, rules_of_user
from accounts.tokens import decode
from collaborations.models import Collaboration
from tests.factories import bearer, loaded_principal, make_collab, make_org, make_user

pytestmark = pytest.mark.django_db

VIEW_USERS = ("user", "ORGANIZATION", "VIEW")


def rule(name: str, scope: str, operation: str) -> Rule:
    return Rule.objects.get(name=name, scope=scope, operation=operation)


@pytest.fixture
def own_role(world):
    """A role of organization A without any rule yet."""
    return Role.objects.create(name="custom", organization=world.org_a)


@pytest.fixture
def admin_a(world):
    return make_user(world.org_a, "Organization Admin")


def can_list_users(api, user) -> bool:
    status = api.get("/api/user", **bearer(user)).status_code
    assert status in (200, 401)
    return status == 200


def test_a_rule_added_to_a_role_counts_from_the_next_request(api, world, own_role, admin_a):
    member = make_user(world.org_a)
    member.roles.add(own_role)
    assert not can_list_users(api, member)

    added = api.post(f"/api/role/{own_role.pk}/rule/{rule(*VIEW_USERS).pk}", **bearer(admin_a))
    assert added.status_code == 201
    assert can_list_users(api, member)

    removed = api.delete(f"/api/role/{own_role.pk}/rule/{rule(*VIEW_USERS).pk}", **bearer(admin_a))
    assert removed.status_code == 200
    assert not can_list_users(api, member)


def test_roles_of_a_user_count_from_the_next_request(api, world, own_role, admin_a):
    own_role.rules.add(rule(*VIEW_USERS))
    member = make_user(world.org_a)
    assert not can_list_users(api, member)

    given = api.patch(f"/api/user/{member.pk}", {"roles": [own_role.pk]}, format="json", **bearer(admin_a))
    assert given.status_code == 200
    assert can_list_users(api, member)

    taken = api.patch(f"/api/user/{member.pk}", {"roles": []}, format="json", **bearer(admin_a))
    assert taken.status_code == 200
    assert not can_list_users(api, member)


def test_changes_outside_the_api_count_from_the_next_request(api, world, own_role):
    member = make_user(world.org_a)
    assert not can_list_users(api, member)
    member.rules.add(rule(*VIEW_USERS))  # given directly
    assert can_list_users(api, member)
    member.rules.clear()
    assert not can_list_users(api, member)
    member.roles.add(own_role)
    own_role.rules.add(rule(*VIEW_USERS))  # through a role
    assert can_list_users(api, member)
    own_role.delete()
    assert not can_list_users(api, member)


@pytest.mark.parametrize("roles", [(), ("Viewer",), ("Researcher", "Viewer"), ("Root",)])
def test_the_rules_loaded_with_the_user_are_those_of_its_roles_and_its_own(world, roles):
    user = make_user(world.org_a, *roles, rules=[rule("task", "GLOBAL", "VIEW"), rule(*VIEW_USERS)])
    principal = loaded_principal(user)
    assert principal.rules == rules_of_user(user.pk)
    assert ("task", "GLOBAL", "VIEW") in principal.rules


def test_a_rule_added_after_the_rules_were_read_counts_for_the_caller(world):
    reader = make_user(world.org_a, "Root")
    loaded_principal(reader)  # the rules known to this process: read by id now
    added = Rule.objects.create(name="newresource", scope="GLOBAL", operation="VIEW")
    user = make_user(world.org_a, rules=[added, rule(*VIEW_USERS)])
    assert loaded_principal(user).rules == {("newresource", "GLOBAL", "VIEW"), VIEW_USERS}


def test_a_user_without_any_rule_has_none(world):
    user = make_user(world.org_a)
    principal = loaded_principal(user)
    assert principal.rules == frozenset()
    assert principal.max_scope("user", "view") is None


@pytest.mark.parametrize("kind", ["user", "node"])
def test_loading_the_caller_is_one_query(world, kind):
    identity = make_user(world.org_a, "Researcher") if kind == "user" else world.node_a
    claims = decode(bearer(identity)["HTTP_AUTHORIZATION"].split()[1])
    principal_from_claims(claims)  # records last_seen
    with CaptureQueriesContext(connection) as queries:
        principal = principal_from_claims(claims)
    assert len(queries) == 1
    sql = queries[0]["sql"]
    if sql.startswith("EXECUTE "):  # PostgreSQL: the statement prepared on this connection, by name
        statements = {name: text for text, name in connection.connection.prepared.items()}
        sql = statements[sql.split()[1].partition("(")[0]]
    assert sql.startswith("SELECT ") and "ORDER BY" not in sql
    assert principal.id == identity.pk and principal.kind == kind


def test_a_deleted_user_is_refused(api, world):
    user = make_user(world.org_a, "Researcher")
    user_id, headers = user.pk, bearer(user)
    user.delete()
    response = api.get("/api/user", **headers)
    assert response.status_code == 401
    assert response.json() == {"msg": f"Error loading the user {user_id}"}


def test_memberships_loaded_with_the_caller_are_those_the_database_has(world):
    loner = make_org("loner")  # in no collaboration
    make_collab(world.org_a, world.org_c, name="AC")
    identities = [make_user(org) for org in (world.org_a, world.org_b, world.org_c, loner)]
    for identity in [*identities, world.node_a, world.node_c]:
        loaded = loaded_principal(identity)
        node = identity if loaded.is_node else None
        queried = Principal(
            kind=loaded.kind, organization_id=identity.organization_id, rules=frozenset(), node=node
        )
        assert loaded.collaboration_ids == queried.collaboration_ids
        assert loaded.collaborating_organization_ids == queried.collaborating_organization_ids
    assert loaded_principal(identities[3]).collaboration_ids == frozenset()
    # A's node serves AB alone, though A is in AC too.
    assert loaded_principal(world.node_a).collaboration_ids == {world.collab_ab.pk}
    assert loaded_principal(world.node_a).collaborating_organization_ids == {world.org_a.pk, world.org_b.pk}
    assert loaded_principal(identities[0]).collaboration_ids == {
        world.collab_ab.pk,
        Collaboration.objects.get(name="AC").pk,
    }


def test_a_new_membership_counts_from_the_next_request(api, world):
    viewer = make_user(world.org_a, "Collaboration Admin")
    newcomer = make_org("newcomer")
    make_user(newcomer, username="newcomer-user")
    listed = {row["username"] for row in api.get("/api/user?per_page=100", **bearer(viewer)).json()["data"]}
    assert "newcomer-user" not in listed
    make_collab(world.org_a, newcomer, name="with newcomer")
    listed = {row["username"] for row in api.get("/api/user?per_page=100", **bearer(viewer)).json()["data"]}
    assert "newcomer-user" in listed
