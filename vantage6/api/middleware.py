"""The scheme from trusted proxies only, CORS for the API and the Socket.IO endpoint (vantage6 allows
all origins by default), the admin site's middleware kept off the API, and the answers of constant views
marked for replay."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as session_middleware
from django.http import HttpRequest, HttpResponse
from django.middleware import csrf
from django.utils.cache import patch_vary_headers

from vantage6.api.observability import replay_recorder
from vantage6.cors import allow_origin, origin_allowed
from vantage6.throttle import from_trusted_proxy

ALLOWED_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ForwardedProtoMiddleware:
    """With ``V6_TRUSTED_PROXIES`` listed, ``X-Forwarded-Proto`` counts only from one of them: a client
    that reaches the server directly cannot claim HTTPS (secure cookies, HSTS, CSRF's referer check)
    for a plain connection. Without a list, every peer is taken for the proxy, as documented."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        proxies = settings.TRUSTED_PROXIES
        if proxies and not from_trusted_proxy(request.META, proxies):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.get_response(request)


class PrivateAnswersMiddleware:
    """An answer to a request with credentials (a bearer token), or to one that changes something (a
    login's tokens, a two-factor secret: answers to requests without a token), is kept by no cache: a
    shared one would hand it to the next client (RFC 6749 5.1 asks no-store of tokens). Cookies set over
    HTTPS (or, from a trusted proxy, for an HTTPS request: ``ForwardedProtoMiddleware`` runs first) are
    Secure, whether or not V6_BEHIND_TLS is set."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        meta = request.META
        private = "HTTP_AUTHORIZATION" in meta or request.method not in SAFE_METHODS
        if private and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store, private"
        if response.cookies and (
            request.is_secure() or meta.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip() == "https"
        ):
            for cookie in response.cookies.values():
                cookie["secure"] = True
        return response


class CorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.allowed = set(settings.CORS_ALLOWED_ORIGINS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # From META: ``request.headers`` would parse every header of every request for these three.
        meta = request.META
        origin = meta.get("HTTP_ORIGIN")
        if request.method == "OPTIONS" and origin and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in meta:
            response = HttpResponse(status=200)
            if origin_allowed(origin, self.allowed):
                response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response["Access-Control-Allow-Headers"] = meta.get(
                    "HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "Authorization, Content-Type"
                )
                response["Access-Control-Max-Age"] = "86400"
        else:
            response = self.get_response(request)
        for name, value in allow_origin(origin, self.allowed):
            if name == "Vary":  # added to, not replaced: the admin's pages vary by Cookie as well
                patch_vary_headers(response, (value,))
            else:
                response[name] = value
        return response


class ConstantAnswersMiddleware:
    """Marks a successful answer of a view declaring ``constant = True`` (``ApiView``) as replayable:
    ``vantage6.http`` then writes it again for a request with the same head (method, target and header
    fields; never with credentials, a body or forwarding headers) without calling the application,
    logging and counting it as ``RequestLogMiddleware`` does.

    Such a view's answer depends on nothing but that head, and so does what every middleware of the
    chain adds to it (CORS by Origin, the security headers); a middleware whose answer depends on
    anything else (the client's address, the time, a counter) must not run for the paths of such views.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = request.resolver_match
        view = getattr(match.func, "view_class", None) if match is not None else None
        if (
            getattr(view, "constant", False)
            and 200 <= response.status_code < 300
            and not response.streaming
            and not response.cookies
        ):
            response.replay = replay_recorder(request, response.status_code)  # type: ignore[attr-defined]
        return response


def _api_only_path(path: str) -> bool:
    """A path of the API proper; its documentation page and schema are part of the site."""
    return path.startswith(_API_PREFIX) and not path.startswith(_SITE_PREFIXES) and path not in _SITE_PATHS


_API_PREFIX = f"{settings.API_PATH}/"
_SITE_PREFIXES = ("/admin/", "/static/")
_SITE_PATHS = {f"{settings.API_PATH}/{page}" for page in ("docs", "redoc", "schema")}


def site_only(middleware_class: type) -> type:
    """``middleware_class`` skipped on API paths.

    Sessions, CSRF, the logged-in admin user and flash messages serve the admin site and the API
    docs only: the API authenticates each request by its bearer token and sets no cookie.
    """

    class SiteOnly(middleware_class):
        def __call__(self, request: HttpRequest):
            if _api_only_path(request.path_info):
                return self.get_response(request)
            return super().__call__(request)

    SiteOnly.__name__ = SiteOnly.__qualname__ = f"SiteOnly{middleware_class.__name__}"
    return SiteOnly


SessionMiddleware = site_only(session_middleware.SessionMiddleware)
CsrfViewMiddleware = site_only(csrf.CsrfViewMiddleware)
AuthenticationMiddleware = site_only(auth_middleware.AuthenticationMiddleware)
MessageMiddleware = site_only(messages_middleware.MessageMiddleware)
