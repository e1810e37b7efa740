"""CORS for the API and the Socket.IO endpoint (vantage6 allows all origins by default)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

ALLOWED_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"


class CorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.allowed = set(settings.CORS_ALLOWED_ORIGINS)

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.allowed or origin in self.allowed

    def __call__(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=200)
            if self._origin_allowed(origin):
                response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response["Access-Control-Allow-Headers"] = request.headers.get(
                    "Access-Control-Request-Headers", "Authorization, Content-Type"
                )
                response["Access-Control-Max-Age"] = "86400"
        else:
            response = self.get_response(request)
        if origin and self._origin_allowed(origin):
            response["Access-Control-Allow-Origin"] = "*" if "*" in self.allowed else origin
            if "*" not in self.allowed:
                response["Vary"] = "Origin"
        return response
