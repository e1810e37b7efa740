"""Every change of who holds which rights leaves one audit record naming its author and its object: a
user's roles or rules, a role's rules. A change the caller may not make leaves none."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, Role, Rule
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db


def _event_rule() -> Rule:
    return Rule.objects.get(name="event", scope="COLLABORATION", operation="RECEIVE")


def _user_roles_set(api, headers, target, role):
    return api.patch(f"/api/user/{target.pk}", {"roles": [role.pk]}, format="json", **headers)


def _user_rules_set(api, headers, target, role):  # noqa: ARG001
    return api.patch(f"/api/user/{target.pk}", {"rules": [_event_rule().pk]}, format="json", **headers)


def _role_rules_set(api, headers, target, role):  # noqa: ARG001
    return api.patch(f"/api/role/{role.pk}", {"rules": [_event_rule().pk]}, format="json", **headers)


def _role_rule_added(api, headers, target, role):  # noqa: ARG001
    return api.post(f"/api/role/{role.pk}/rule/{_event_rule().pk}", **headers)


def _role_rule_removed(api, headers, target, role):  # noqa: ARG001
    role.rules.add(_event_rule())
    return api.delete(f"/api/role/{role.pk}/rule/{_event_rule().pk}", **headers)


CHANGES = [
    (_user_roles_set, "user.update", "user"),
    (_user_rules_set, "user.update", "user"),
    (_role_rules_set, "role.update", "role"),
    (_role_rule_added, "role.rule_add", "role"),
    (_role_rule_removed, "role.rule_remove", "role"),
]


def _trail() -> list[tuple]:
    return list(
        AuditEntry.objects.order_by("id").values_list("action", "actor_id", "object_type", "object_id")
    )


@pytest.mark.parametrize(
    ("change", "action", "kind"), CHANGES, ids=lambda value: getattr(value, "__name__", value)
)
@pytest.mark.parametrize("author", ["Root", "Viewer"])
def test_a_rights_change_is_recorded_once_with_its_author(api, world, change, action, kind, author):
    caller = make_user(world.org_a, author)
    target = make_user(world.org_a)
    role = Role.objects.create(name="listeners", organization=world.org_a)
    before = _trail()

    answer = change(api, bearer(caller), target, role)

    if author == "Viewer":  # may not change rights: nothing changed, nothing recorded
        assert answer.status_code == 401, answer.content  # as vantage6 answers it
        assert _trail() == before
        return
    assert answer.status_code in (200, 201), answer.content
    changed = target if kind == "user" else role
    assert _trail()[len(before) :] == [(action, caller.pk, kind, changed.pk)]
