"""The service endpoints (health, version, robots.txt), the API docs pages and the OPTIONS metadata of
every view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from vantage6 import VANTAGE6_VERSION, health


class ApiView(APIView):
    """The base of every API view: DRF's, with its policy objects (parsers, authenticators, permission
    checks, throttles, renderers, content negotiator) made once per view class instead of on every
    request; they keep nothing of a request."""

    # True for a view whose answer depends on nothing in the request but its method, path and header
    # fields (no principal, no database, no state of the process): it may be replayed
    # (``vantage6.api.middleware.ConstantAnswersMiddleware``).
    constant = False
    _made: dict[tuple[type, str], Any] = {}

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        key = (type(self), name)
        made = ApiView._made.get(key)
        if made is None:
            made = ApiView._made[key] = make()
        return made

    def get_parsers(self) -> list:
        return self._once("parsers", lambda: [parser() for parser in self.parser_classes])

    def get_authenticators(self) -> list:
        return self._once("authenticators", lambda: [auth() for auth in self.authentication_classes])

    def get_permissions(self) -> list:
        return self._once("permissions", lambda: [check() for check in self.permission_classes])

    def get_throttles(self) -> list:
        return self._once("throttles", lambda: [throttle() for throttle in self.throttle_classes])

    def get_renderers(self) -> list:
        return self._once("renderers", lambda: [renderer() for renderer in self.renderer_classes])

    def get_content_negotiator(self) -> Any:
        return self._once("negotiator", self.content_negotiation_class)

    def perform_authentication(self, request: Request) -> None:
        # A method the view does not serve is a 405 for every caller, before the token is looked at:
        # otherwise what the authentication of the view says about the token (a 422 of a refresh
        # endpoint, a 401) stands in for the refusal of the method.
        method = request.method.lower() if request.method else ""
        if method not in self.http_method_names or not hasattr(self, method):
            self.http_method_not_allowed(request)
        super().perform_authentication(request)


class ApiMetadata(SimpleMetadata):
    """DRF's answer to ``OPTIONS``; a view without a serializer (raw uploads, commands) lists no fields."""

    def determine_actions(self, request: Request, view: APIView) -> dict:
        if getattr(view, "serializer_class", None) is None:
            return {}
        return super().determine_actions(request, view)


class HealthOutput(serializers.Serializer):
    database = serializers.BooleanField()
    rabbitmq = serializers.BooleanField()
    optional_fields = ("rabbitmq",)  # only when RabbitMQ is configured


class UnhealthyOutput(HealthOutput):
    msg = serializers.CharField()


class HealthView(ApiView):
    """Whether this process reaches its database and (when configured) RabbitMQ; 503 when one is down,
    so that a proxy or orchestrator can route around the process."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        responses={(200, "application/json"): HealthOutput, (503, "application/json"): UnhealthyOutput}
    )
    def get(self, request: Request) -> Response:
        state = health.report()
        down = [service for service, up in state.items() if not up]
        if down:
            return Response({"msg": f"Unavailable: {', '.join(down)}", **state}, status=503)
        return Response(state)


class VersionView(ApiView):
    authentication_classes: list = []
    permission_classes: list = []
    constant = True

    @extend_schema(responses=inline_serializer("Version", {"version": serializers.CharField()}))
    def get(self, request: Request) -> Response:
        return Response({"version": VANTAGE6_VERSION})


class RobotsView(ApiView):
    """``/robots.txt``: the server is an API, not a site to index, so crawlers are asked to stay out."""

    authentication_classes: list = []
    permission_classes: list = []
    constant = True
    content = "User-agent: *\nDisallow: /\n"

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(self.content, content_type="text/plain")


class DocsView(SpectacularSwaggerView):
    """The Swagger UI page; it renders HTML only, so OPTIONS gets DRF's 405 rather than metadata."""

    metadata_class = None


class RedocView(SpectacularRedocView):
    """The ReDoc page, as ``DocsView`` an HTML page only."""

    metadata_class = None
    template_name = "api/redoc.html"
