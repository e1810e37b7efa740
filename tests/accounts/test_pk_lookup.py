"""``PkLookup`` builds rows from SQL it compiled once, by hand: it must give what ``QuerySet.get``
gives, field by field and annotation by annotation, so that a Django upgrade that changes how rows
are built fails here rather than in the authentication of every request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from accounts import sessions
from accounts.authentication import _node_queryset, _user_queryset
from accounts.catalogue import ORG_ADMIN
from accounts.models import LoginSession
from tests.factories import make_user
from vantage6.api.sql import PkLookup

pytestmark = pytest.mark.django_db


# The annotations that join ids into one string: an aggregate's order is the plan's, which may differ
# between two runs of one statement on PostgreSQL, so they compare as sets of ids.
_JOINED = {"rule_keys", "collaboration_keys", "partner_keys", "revoked_logins"}


def _state(row) -> dict:
    """Every attribute the ORM set on the row (fields, annotations), without Django's bookkeeping."""
    return {
        name: set(value.split(",")) if name in _JOINED and value else value
        for name, value in vars(row).items()
        if name != "_state"
    }


def _identities(world) -> dict:
    """A user and a node with something in every annotation: rules, memberships, an ended login."""
    user = make_user(world.org_a, ORG_ADMIN)
    user.last_seen = timezone.now()
    user.save(update_fields=["last_seen"])
    for identity in (user, world.node_a):
        for _ in range(2):
            sessions.start_login(identity, identity.type)
        LoginSession.objects.filter(identity_id=identity.pk).update(revoked_at=timezone.now())
    return {"user": (_user_queryset, user.pk), "node": (_node_queryset, world.node_a.pk)}


@pytest.mark.parametrize("which", ["user", "node"])
def test_the_lookup_builds_the_row_the_queryset_gets(world, which):
    queryset, pk = _identities(world)[which]
    looked_up = PkLookup(queryset)(pk)
    expected = queryset().get(pk=pk)
    assert type(looked_up) is type(expected)
    assert _state(looked_up) == _state(expected)
    annotations = ["collaboration_keys", "partner_keys", "revoked_logins"]
    assert all(_state(expected)[name] for name in annotations)  # each compared with a value
    assert looked_up._state.adding is False and looked_up._state.db == connection.alias


@pytest.mark.parametrize("queryset", [_user_queryset, _node_queryset])
@pytest.mark.parametrize("pk", [987_654_321, 2**63 - 1, 2**63, -(2**63) - 1])
def test_a_missing_row_is_none(world, queryset, pk):  # noqa: ARG001 - the rows around it
    assert PkLookup(queryset)(pk) is None


def test_the_permission_checks_build_a_lookups_queryset_once():
    """A lookup's queryset (annotations and subqueries built in Python) is built for its model and its
    SQL once, not on every request that fetches a row through it."""
    from accounts.permissions import fetch_named, get_for, principal_for_system
    from collaborations.models import Organization
    from tests.factories import make_org

    built = []

    def organizations():
        built.append(1)
        return Organization.objects.all()

    lookup = PkLookup(organizations)
    org, system = make_org(), principal_for_system()
    for _ in range(3):
        assert get_for(system, lookup, org.pk, missing="gone") == org
        assert fetch_named(system, lookup, org.pk, missing="gone") == org
    assert len(built) == 2  # its model, its SQL
