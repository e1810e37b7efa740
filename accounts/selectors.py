"""Reads on identities: filtered querysets for the list endpoints, and what a single row shows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from django.db.models import Q, QuerySet

from accounts.catalogue import OPERATIONS, SCOPES
from accounts.models import AuditAction, AuditEntry, Role, Rule, User
from accounts.permissions import Principal, fetch, fetch_named, memberships, missing_to
from vantage6.api.errors import bad_request, unauthorized
from vantage6.api.lookups import like, like_filtered
from vantage6.api.sql import CompiledList, PkLookup


def _name_or_code(value: str, codes: dict[str, str]) -> str:
    """Accept a code (``glo``, ``v``) or a NAME (``GLOBAL``, ``view``)."""
    return codes.get(value.lower(), value.upper())


def _user_for_filter(principal: Principal, user_id: int) -> User:
    """The user a query filter names. Only who sees every user learns that an id does not exist;
    to anyone else a missing user is the same 401 as one they may not see (``missing_to``)."""
    missing = missing_to(principal, "user", bad_request(f"User id={user_id} does not exist!"))
    return fetch(User.objects.all(), user_id, missing=missing)


_rules = CompiledList(Rule.objects.all)  # the pages of the rule list (every rule is for everyone)


def rule_list(principal: Principal, filters: dict) -> QuerySet[Rule]:
    rules = cast(QuerySet[Rule], _rules.narrowed(Q(), distinct=False))
    if name := filters.get("name"):
        rules = rules.filter(name=name)
    if operation := filters.get("operation"):
        rules = rules.filter(operation=_name_or_code(operation, OPERATIONS))
    if scope := filters.get("scope"):
        rules = rules.filter(scope=_name_or_code(scope, SCOPES))
    if (role_id := filters.get("role_id")) is not None:
        fetch_named(
            principal, Role.objects.all(), role_id, missing=bad_request(f"Role id={role_id} does not exist!")
        )
        rules = rules.filter(roles=role_id)
    if (user_id := filters.get("user_id")) is not None:
        user = _user_for_filter(principal, user_id)
        principal.require(principal.allows("user", user))
        rules = rules.filter(pk__in=Rule.objects.filter(roles__users=user_id).values("pk")) | rules.filter(
            users=user_id
        )
        rules = rules.distinct()
    return rules


def _members_of(collaboration_id: int) -> QuerySet:
    return memberships().filter(collaboration_id=collaboration_id).values("organization_id")


# A user by primary key, on every request of ``GET /user/<id>``: compiled once per connection.
user_by_pk = PkLookup(User.objects.all)


_users = CompiledList(User.objects.all)  # the pages of the user list


def user_list(principal: Principal, filters: dict) -> QuerySet[User]:
    if principal.max_scope("user", "view") is None:
        # Without a view rule a user may still look themself up by username.
        if filters.get("username") != principal.user.username:
            raise unauthorized()
        users = User.objects.filter(pk=principal.user.pk)
    else:
        users = principal.visible("user", _users)
    users = like_filtered(users, filters, "username", "firstname", "lastname", "email")
    users = principal.filtered(users, "user", filters, "organization_id")
    if (collaboration_id := filters.get("collaboration_id")) is not None:
        principal.require(principal.reaches("user", "view", collaboration_id=collaboration_id))
        users = users.filter(organization_id__in=_members_of(collaboration_id))
    if (role_id := filters.get("role_id")) is not None:
        missing = bad_request(f"Role id={role_id} does not exist!")
        role = fetch_named(principal, Role.objects.all(), role_id, missing=missing)
        if role.organization_id is not None:
            principal.require(principal.reaches("user", "view", organization_id=role.organization_id))
        users = users.filter(roles=role_id)
    if (rule_id := filters.get("rule_id")) is not None:
        fetch(Rule.objects.all(), rule_id, missing=bad_request(f"Rule id={rule_id} does not exist!"))
        users = users.filter(rules=rule_id)
    if since := filters.get("last_seen_from"):
        users = users.filter(last_seen__gte=since)
    if till := filters.get("last_seen_till"):
        users = users.filter(last_seen__lt=till + timedelta(days=1))  # the whole day counts
    return users


def user_permissions(user: User, viewer: Principal) -> dict:
    """What the UI reads after login: the user's roles, effective rules and collaborating organizations.

    The organizations of those of the user's collaborations that ``viewer`` is in (all of them for the user
    itself), or may view all of: another organization's partners in collaborations the viewer is not in are
    no more its to learn here than through ``GET /organization?collaboration_id=``."""
    via_roles = Rule.objects.filter(roles__users=user.pk).values_list("id", flat=True)
    direct = Rule.objects.filter(users=user.pk).values_list("id", flat=True)
    collaborations = memberships().filter(organization_id=user.organization_id)
    if not viewer.reaches_every("collaboration", "view"):
        collaborations = collaborations.filter(collaboration_id__in=viewer.collaboration_ids)
    members = memberships().filter(collaboration_id__in=collaborations.values("collaboration_id"))
    return {
        "roles": sorted(user.roles.values_list("id", flat=True)),
        "rules": sorted(via_roles.union(direct)),
        "orgs_in_collabs": sorted(set(members.values_list("organization_id", flat=True))),
    }


_roles = CompiledList(Role.objects.all)  # the pages of the role list


def role_list(principal: Principal, filters: dict) -> QuerySet[Role]:
    roles = principal.visible("role", _roles)
    include_root = filters.get("include_root")
    builtin = Q(organization__isnull=True) if include_root else Q(pk__in=[])
    if organization_ids := filters.get("organization_id"):
        for organization_id in organization_ids:
            principal.require(principal.reaches("role", "view", organization_id=organization_id))
        roles = roles.filter(Q(organization_id__in=organization_ids) | builtin)
    if (collaboration_id := filters.get("collaboration_id")) is not None:
        principal.require(principal.reaches("role", "view", collaboration_id=collaboration_id))
        roles = roles.filter(Q(organization_id__in=_members_of(collaboration_id)) | builtin)
    for name in ("name", "description"):
        if values := filters.get(name):
            match = Q()
            for value in values:
                match |= like(name, value)
            roles = roles.filter(match)
    if (rule_id := filters.get("rule_id")) is not None:
        fetch(Rule.objects.all(), rule_id, missing=f"Rule id={rule_id} not found!")
        roles = roles.filter(rules=rule_id)
    if (user_id := filters.get("user_id")) is not None:
        user = _user_for_filter(principal, user_id)
        principal.require(
            user_id == principal.id or principal.reaches("role", "view", organization_id=user.organization_id)
        )
        roles = roles.filter(users=user_id)
    return roles


# --- the audit trail ------------------------------------------------------------------------------
def audit_action(value: str) -> AuditAction:
    """An action name of the vocabulary; anything else is a 400."""
    try:
        return AuditAction(value)
    except ValueError:
        raise bad_request(f"Unknown action {value!r}; actions are: {', '.join(AuditAction.values)}") from None


def audit_filtered(
    entries: QuerySet[AuditEntry],
    *,
    actor_type: str | None = None,
    actor_id: int | None = None,
    action: AuditAction | None = None,
    object_type: str | None = None,
    object_id: int | None = None,
    organization_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEntry]:
    """Entries narrowed by the filters given (the same for the API and the export command). An
    organization matches entries whose actor or object belonged to it; ``until`` is exclusive."""
    exact = {
        "actor_type": actor_type, "actor_id": actor_id, "action": action,
        "object_type": object_type, "object_id": object_id,
    }  # fmt: skip
    entries = entries.filter(**{name: value for name, value in exact.items() if value is not None})
    if organization_id is not None:
        entries = entries.filter(
            Q(actor_organization_id=organization_id) | Q(object_organization_id=organization_id)
        )
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    return entries


def audit_list(principal: Principal, filters: dict) -> QuerySet[AuditEntry]:
    action = filters.get("action")
    return audit_filtered(
        principal.visible("audit", AuditEntry.objects.all()),
        actor_type=filters.get("actor_type"),
        actor_id=filters.get("actor_id"),
        action=audit_action(action) if action else None,
        object_type=filters.get("object_type"),
        object_id=filters.get("object_id"),
        organization_id=filters.get("organization_id"),
        since=filters.get("since"),
        until=filters.get("until"),
    )
