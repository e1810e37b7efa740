"""Django authentication backend: the admin site obeys the same rules as the API.

Django permissions (``accounts.change_user``, ``collaborations.view_organization``, ...) are answered
from the rule engine, with and without an object; nothing is stored per object for what a scope
rule decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from accounts.permissions import Principal, principal_for_user
from vantage6.api.errors import ApiError

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.http import HttpRequest

    from accounts.models import User

    # Who Django asks about: a user of the admin, or its login page's anonymous visitor.
    AnyUser = AbstractBaseUser | AnonymousUser

# Django model → vantage6 rule resource; Django action → rule operation.
RESOURCES = {"accounts.user": "user", "accounts.role": "role", "collaborations.organization": "organization"}
OPERATIONS = {"view": "view", "change": "edit", "add": "create", "delete": "delete"}
# Rules that give access to the admin site: managing users, roles or organizations beyond oneself,
# or reading the audit trail.
STAFF_RULES = [(resource, op) for resource in RESOURCES.values() for op in ("edit", "create")] + [
    ("audit", "view")
]


def principal_of(user) -> Principal:
    """The principal of a Django-side user (the admin), computed once per user object.

    Anonymous visitors (the admin's login page) get a principal without any rule.
    """
    if not getattr(user, "is_authenticated", False):
        return Principal(kind="user", organization_id=None, rules=frozenset())  # type: ignore[arg-type]
    cached = getattr(user, "_principal", None)
    if cached is None:
        cached = user._principal = principal_for_user(user)
    return cached


def is_staff(user: AnyUser) -> bool:
    principal = principal_of(user)
    return any(principal.at_least("org", resource, op) for resource, op in STAFF_RULES)


# What the admin refuses on top of the scope of a rule, as the services behind it refuse it.
GUARDS: dict[tuple[str, str], Callable[[Principal, Any], bool]] = {
    ("user", "delete"): lambda principal, user: principal.holds_target(user),
    ("role", "create"): lambda _, role: not role.is_default_role,
    ("role", "edit"): lambda _, role: not role.is_default_role,
    ("role", "delete"): lambda principal, role: (
        not role.is_default_role and principal.holds(role.rules.values_list("name", "scope", "operation"))
    ),
    # Nobody deletes their own organization.
    ("organization", "delete"): lambda principal, organization: organization.pk != principal.organization_id,
}


def object_allowed(principal: Principal, resource: str, op: str, obj: object) -> bool:
    """The API's check of ``op`` on one user, role or organization: the reach of the scope
    (``Principal.allows``) and the guard of the service."""
    guard = GUARDS.get((resource, op))
    return principal.allows(resource, obj, op) and (guard is None or guard(principal, obj))


class RuleBackend:
    """Logs users in with their password (lock-out and two-factor code included); rules give permissions."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        mfa_code: str | None = None,
        **_: object,
    ) -> User | None:
        from accounts.login import authenticate_user, failures_limited

        if username is None or password is None:
            return None
        from accounts.models import AuditAction, User

        try:
            with failures_limited(request.META if request else {}, AuditAction.USER_LOGIN_FAILED):
                outcome = authenticate_user(
                    username=username, password=password, mfa_code=mfa_code, setup_allowed=False
                )
        except ApiError:
            return None
        return outcome if isinstance(outcome, User) else None  # a dict: the code is still missing

    def get_user(self, user_id: int) -> User | None:
        from accounts.models import User

        return User.objects.filter(pk=user_id).first()

    def has_perm(self, user_obj: AnyUser, perm: str, obj: object | None = None) -> bool:
        if not getattr(user_obj, "is_authenticated", False) or "." not in perm:
            return False
        app_label, codename = perm.split(".", 1)
        action, _, model = codename.partition("_")
        if f"{app_label}.{model}" == "accounts.rule":
            return action == "view" and is_staff(user_obj)  # the catalogue is readable, never editable
        resource = RESOURCES.get(f"{app_label}.{model}")
        op = OPERATIONS.get(action)
        if resource is None or op is None:
            return False
        principal = principal_of(user_obj)
        if obj is None:
            return principal.at_least("org", resource, op)
        return object_allowed(principal, resource, op, obj)

    def has_module_perms(self, user_obj: AnyUser, app_label: str) -> bool:
        if not getattr(user_obj, "is_authenticated", False):
            return False
        principal = principal_of(user_obj)
        return any(
            principal.at_least("org", resource, op)
            for model, resource in RESOURCES.items()
            if model.startswith(f"{app_label}.")
            for op in OPERATIONS.values()
        )

    def get_all_permissions(self, user_obj: AnyUser, obj: object | None = None) -> set[str]:
        return set()
