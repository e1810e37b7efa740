"""The base of every API view: the caller (the principal of the request's token) and the client types
an endpoint serves."""

from __future__ import annotations

from typing import Any, cast

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from accounts.authentication import DeferredCaller, DeferredJWTAuthentication, loaded
from accounts.permissions import Principal
from vantage6.api.errors import ApiError
from vantage6.api.views import ApiMetadata, ApiView

USER, NODE, CONTAINER = "user", "node", "container"
ANY_CLIENT = (USER, NODE, CONTAINER)


def caller(request: Request) -> Principal:
    """The principal of the request's token (the token authentication puts it in ``request.user``),
    loaded now where it was deferred."""
    return loaded(cast(Principal | DeferredCaller, request.user))


class ClientTypeGate(BasePermission):
    """Let through only the client types the view allows for the current action.

    A view declares ``clients`` (a tuple of "user", "node", "container") and may refine it per
    action in ``action_clients``. A wrong client type is a 401 with a message (vantage6 gives a 500).
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        clients = cast(Any, view).clients
        allowed = getattr(view, "action_clients", {}).get(getattr(view, "action", None), clients)
        principal = cast(Principal | DeferredCaller | None, request.user)
        if principal is None:
            if not allowed:
                return True
            raise ApiError(401, "Missing Authorization Header")
        if principal.kind not in allowed:
            loaded(principal)  # a token no longer valid is refused as such first, deferred or not
            raise ApiError(401, f"This endpoint is not available to {principal.kind}s")
        return True


class ApiViewSet(ApiView, GenericViewSet):
    """The base of every resource viewset: JWT auth, the client-type gate, the vantage6 envelope.

    Rows a caller may see are decided by the permission engine (``self.principal.visible``), never
    re-implemented here.
    """

    clients: tuple[str, ...] = (USER,)
    action_clients: dict[str, tuple[str, ...]] = {}
    # Actions whose write checks the caller in its own statement where it can: their caller is loaded
    # only when needed (``DeferredCaller``), read through ``self.deferred_caller``.
    deferred_actions: frozenset[str] = frozenset()
    permission_classes = [ClientTypeGate]
    metadata_class = ApiMetadata
    lookup_value_regex = r"[0-9]+"

    @property
    def principal(self) -> Principal:
        return caller(self.request)

    @property
    def deferred_caller(self) -> Principal | DeferredCaller:
        return cast(Principal | DeferredCaller, self.request.user)

    def get_authenticators(self) -> list:
        # (the schema generator builds its mock requests before the view has one)
        method = getattr(self.request, "method", None) or ""
        action = getattr(self, "action_map", {}).get(method.lower())
        if action not in self.deferred_actions:
            return super().get_authenticators()
        return self._once("deferred_authenticators", lambda: [DeferredJWTAuthentication()])

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        # A deferred caller's sign of life, once the view's transaction is over: not on its commit (a
        # refused write rolls back, and the caller was still seen), nor on Django's request_finished (one
        # signal for the process: a receiver per request would be called by every thread's requests), nor
        # after the answer (``bridge.after_answer`` runs in the event loop, no place for a database write).
        deferred = getattr(request, "_user", None)
        if isinstance(deferred, DeferredCaller):
            deferred.seen_once_done()
        return super().finalize_response(request, response, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        # A caller not loaded yet is checked before any other refusal of its request is told (a body
        # that is not valid, say), as a loaded one is checked before the view runs.
        deferred = getattr(self.request, "_user", None)
        if isinstance(deferred, DeferredCaller):
            try:
                deferred.load()
            except ApiError as refused:
                exc = refused
        return super().handle_exception(exc)
