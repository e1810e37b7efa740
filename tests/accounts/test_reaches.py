"""The check of a filter value (``Principal.reaches``), derived from the scope definitions, answers
as the helpers of permissions.md §3 (``ALLOW_ORG``, ``ALLOW_ORG_IN_COL``, ``CAN_COL``, written apart in
tests/matrix.py) for every role, rule of the catalogue and place."""

from __future__ import annotations

import pytest

from accounts.catalogue import OPERATIONS, RULES
from accounts.permissions import RESOURCE_SCOPES, Principal
from tests.factories import loaded_principal, make_collab
from tests.matrix import PLACES, ROLES, ContainerCaller, Rules, _caller

pytestmark = pytest.mark.django_db

# (resource, operation) of every rule of the catalogue.
RESOURCE_OPERATIONS = sorted({(resource, OPERATIONS[op].lower()) for resource, _, op, *_ in RULES})


def _principal(world, role: str):
    caller = _caller(world, role)
    return loaded_principal(caller.claims if isinstance(caller, ContainerCaller) else caller)


@pytest.mark.parametrize("role", ROLES)
def test_reaches_answers_as_the_spec_helpers(world, role):
    principal, rules = _principal(world, role), Rules(role)
    organizations = {"own": world.org_a.pk, "collab": world.org_b.pk, "other": world.org_c.pk}
    collaborations = {"own": world.collab_ab.pk, "collab": world.collab_ab.pk, "other": world.collab_c.pk}
    for resource, operation in RESOURCE_OPERATIONS:
        belongs_to_organizations = (
            RESOURCE_SCOPES.get(resource) is None or RESOURCE_SCOPES[resource].organization
        )
        for place in PLACES:
            org, col = organizations[place], collaborations[place]
            case = f"{resource} {operation} in {place}"
            assert principal.reaches(resource, operation, organization_id=org) == rules.allow_org(
                resource, operation, place
            ), case
            assert principal.reaches(
                resource, operation, organization_id=org, collaboration_id=col
            ) == rules.allow_org_in_col(resource, operation, place, place), case
            if belongs_to_organizations:  # a collaboration is also reached at organization scope
                assert principal.reaches(resource, operation, collaboration_id=col) == rules.can_col(
                    resource, operation, place
                ), case


@pytest.mark.parametrize("scope", ["GLOBAL", "COLLABORATION", "ORGANIZATION", "OWN", None])
def test_the_event_reach_follows_the_broadest_receive_scope(world, scope):
    empty = make_collab(name="nobody yet")
    rules = frozenset([("event", scope, "RECEIVE")] if scope else [])
    principal = Principal(kind="user", organization_id=world.org_a.pk, rules=rules)
    ab, c, a = world.collab_ab.pk, world.collab_c.pk, world.org_a.pk
    expected = {
        "GLOBAL": [(ab, None), (c, None), (empty.pk, None)],
        "COLLABORATION": [(ab, None)],
        "ORGANIZATION": [(ab, a)],
        "OWN": [],
        None: [],
    }[scope]
    assert principal.event_reach("receive") == expected
