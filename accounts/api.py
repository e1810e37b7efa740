"""The base of every API view: the caller (the principal of the request's token) and the client types
an endpoint serves."""

from __future__ import annotations

from typing import Any, cast

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from accounts.permissions import Principal
from vantage6.api.errors import ApiError
from vantage6.api.views import ApiMetadata, ApiView

USER, NODE, CONTAINER = "user", "node", "container"
ANY_CLIENT = (USER, NODE, CONTAINER)


def caller(request: Request) -> Principal:
    """The principal of the request's token (the token authentication puts it in ``request.user``)."""
    return cast(Principal, request.user)


class ClientTypeGate(BasePermission):
    """Let through only the client types the view allows for the current action.

    A view declares ``clients`` (a tuple of "user", "node", "container") and may refine it per
    action in ``action_clients``. A wrong client type is a 401 with a message (vantage6 gives a 500).
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        clients = cast(Any, view).clients
        allowed = getattr(view, "action_clients", {}).get(getattr(view, "action", None), clients)
        principal = cast(Principal | None, request.user)
        if principal is None:
            if not allowed:
                return True
            raise ApiError(401, "Missing Authorization Header")
        if principal.kind not in allowed:
            raise ApiError(401, f"This endpoint is not available to {principal.kind}s")
        return True


class ApiViewSet(ApiView, GenericViewSet):
    """The base of every resource viewset: JWT auth, the client-type gate, the vantage6 envelope.

    Rows a caller may see are decided by the permission engine (``self.principal.visible``), never
    re-implemented here.
    """

    clients: tuple[str, ...] = (USER,)
    action_clients: dict[str, tuple[str, ...]] = {}
    permission_classes = [ClientTypeGate]
    metadata_class = ApiMetadata
    lookup_value_regex = r"[0-9]+"

    @property
    def principal(self) -> Principal:
        return caller(self.request)
