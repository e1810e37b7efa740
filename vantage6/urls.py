"""URL routes: the API under ``V6_API_PATH`` (no trailing slashes), its schema and docs, the admin."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from vantage6.api.observability import metrics_view
from vantage6.api.schema_view import SchemaView
from vantage6.api.views import DocsView, HealthView, RedocView, RobotsView, VersionView

api = settings.API_PATH.lstrip("/")
prefix = f"{api}/" if api else ""

urlpatterns = [
    path(f"{prefix}health", HealthView.as_view(), name="health"),
    path(f"{prefix}version", VersionView.as_view(), name="version"),
    path(f"{prefix}metrics", metrics_view, name="metrics"),
    path(f"{prefix}schema", SchemaView.as_view(), name="schema"),
    path(f"{prefix}docs", DocsView.as_view(url_name="schema"), name="docs"),
    path(f"{prefix}redoc", RedocView.as_view(url_name="schema"), name="redoc"),
    path(prefix, include("accounts.urls")),
    path(prefix, include("collaborations.urls")),
    path(prefix, include("nodes.urls")),
    path(prefix, include("tasks.urls")),
    path("admin/", admin.site.urls),
    path("robots.txt", RobotsView.as_view(), name="robots"),
]

handler400 = "vantage6.api.errors.json_400"
handler404 = "vantage6.api.errors.json_404"
handler500 = "vantage6.api.errors.json_500"
