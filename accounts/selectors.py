"""Reads on identities: filtered querysets for the list endpoints."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.request import Request

from accounts.catalogue import OPERATIONS, SCOPES
from accounts.models import Role, Rule, User
from vantage6.api.errors import bad_request
from vantage6.api.params import int_param


def _name_or_code(value: str, codes: dict[str, str]) -> str:
    """Accept a code (``glo``, ``v``) or a NAME (``GLOBAL``, ``view``)."""
    return codes.get(value.lower(), value.upper())


def rule_list(request: Request) -> QuerySet[Rule]:
    rules = Rule.objects.all()
    params = request.query_params
    if name := params.get("name"):
        rules = rules.filter(name=name)
    if operation := params.get("operation"):
        rules = rules.filter(operation=_name_or_code(operation, OPERATIONS))
    if scope := params.get("scope"):
        rules = rules.filter(scope=_name_or_code(scope, SCOPES))
    if (role_id := int_param(request, "role_id")) is not None:
        if not Role.objects.filter(pk=role_id).exists():
            raise bad_request(f"Role id={role_id} does not exist!")
        rules = rules.filter(roles=role_id)
    if (user_id := int_param(request, "user_id")) is not None:
        if not User.objects.filter(pk=user_id).exists():
            raise bad_request(f"User id={user_id} does not exist!")
        rules = rules.filter(pk__in=Rule.objects.filter(roles__users=user_id).values("pk")) | rules.filter(
            users=user_id
        )
        rules = rules.distinct()
    return rules
