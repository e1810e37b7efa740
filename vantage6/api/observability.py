"""One log line per request, and Prometheus metrics at ``/api/metrics`` when ``V6_METRICS=1``."""

from __future__ import annotations

import logging
import re
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from vantage6.logging import PATH_TEXT_LIMIT, client_text

logger = logging.getLogger("vantage6.request")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Any other method counts as OTHER, so that clients cannot grow the number of series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def label(value: object) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@lru_cache(maxsize=1024)
def _route_label(route: str) -> str:
    """A route as a readable template: ``api/run/(?P<pk>[0-9]+)$`` (router regex) → ``api/run/<pk>``."""
    return label(_NAMED_GROUP.sub(r"<\1>", route).lstrip("^").rstrip("$"))


_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _principal_label(request: HttpRequest) -> str:
    principal: Any = getattr(request, "user", None)
    kind = getattr(principal, "kind", None)
    if kind == "container":
        return f"container:task={principal.claims.get('task_id')}"
    if kind is not None:
        return f"{kind}:{principal.id}"
    if getattr(principal, "is_authenticated", False):  # a Django admin session
        return f"user:{principal.pk}"
    return "anonymous"


class RequestMetrics:
    """Request counts and latency histograms of this process, by route and status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        route = _route_label(route)
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.buckets[(method, route)][bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.sums[(method, route)] += seconds

    def render(self) -> list[str]:
        lines = [
            "# HELP vantage6_requests_total HTTP requests by route and status",
            "# TYPE vantage6_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self.requests.items()):
                lines.append(
                    f'vantage6_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}'
                )
            lines += [
                "# HELP vantage6_request_duration_seconds request latency",
                "# TYPE vantage6_request_duration_seconds histogram",
            ]
            for (method, route), counts in sorted(self.buckets.items()):
                labels = f'method="{method}",route="{route}"'
                cumulative = 0
                for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), counts, strict=True):
                    cumulative += count
                    lines.append(
                        f'vantage6_request_duration_seconds_bucket{{{labels},le="{bound}"}} {cumulative}'
                    )
                lines.append(f"vantage6_request_duration_seconds_count{{{labels}}} {cumulative}")
                lines.append(
                    f"vantage6_request_duration_seconds_sum{{{labels}}} {self.sums[(method, route)]:.6f}"
                )
        return lines


METRICS = RequestMetrics()
# The gauges of the apps, each registered in its AppConfig.ready(): a function giving its lines.
GAUGES: list[Callable[[], list[str]]] = []


def register_gauges(gauges: Callable[[], list[str]]) -> None:
    """Add an app's gauges to ``/api/metrics``."""
    if gauges not in GAUGES:
        GAUGES.append(gauges)


class RequestLogMiddleware:
    """Logs method, path, status, duration and principal of every request (never bodies or secrets)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.metrics = settings.METRICS_ENABLED

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - start
        if logger.isEnabledFor(logging.INFO):
            _log(request.method or "", request.path, response.status_code, seconds, _principal_label(request))
        if self.metrics:
            METRICS.observe(request.method or "", _route(request), response.status_code, seconds)
        return response


def replay_recorder(request: HttpRequest, status: int) -> Callable[[float], None]:
    """Logs and counts an answer given again as to ``request`` (by ``vantage6.http``, without the
    application), given the seconds it took."""
    method, path, principal, route = (
        request.method or "",
        request.path,
        _principal_label(request),
        _route(request),
    )

    def record(seconds: float) -> None:
        if logger.isEnabledFor(logging.INFO):
            _log(method, path, status, seconds, principal)
        if settings.METRICS_ENABLED:
            METRICS.observe(method, route, status, seconds)

    return record


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None else "unmatched"


def _log(method: str, path: str, status: int, seconds: float, principal: str) -> None:
    # Control characters (a decoded %0A) must not start a forged log line.
    method, path = client_text(method), client_text(path, PATH_TEXT_LIMIT)
    logger.info(
        "%s %s %s %.1fms %s",
        method,
        path,
        status,
        seconds * 1000,
        principal,
        extra={
            "fields": {
                "method": method,
                "path": path,
                "status": status,
                "ms": round(seconds * 1000, 2),
                "principal": principal,
            }
        },
    )


def metrics_view(_request: HttpRequest) -> HttpResponse:
    """Prometheus text format: requests and latencies of this process, then the gauges of the apps."""
    if not settings.METRICS_ENABLED:
        return HttpResponse(
            '{"msg": "Metrics are not enabled (V6_METRICS=1)."}', status=404, content_type="application/json"
        )
    lines = METRICS.render()
    for gauges in GAUGES:
        lines += gauges()
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
