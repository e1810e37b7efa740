"""The ``{id, link, methods}`` references and to-many link strings of the vantage6 API."""

from __future__ import annotations

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# HTTP methods of each ``/<resource>/<id>`` route (HEAD and OPTIONS left out), as vantage6 lists them.
DETAIL_METHODS: dict[str, list[str]] = {
    "organization": ["GET", "PATCH", "DELETE"],
    "collaboration": ["GET", "PATCH", "DELETE"],
    "user": ["GET", "PATCH", "DELETE"],
    "study": ["GET", "PATCH", "DELETE"],
    "algorithmstore": ["GET", "PATCH", "DELETE"],
    "node": ["GET", "PATCH", "DELETE"],
    "role": ["GET", "PATCH", "DELETE"],
    "rule": ["GET"],
    "task": ["GET", "DELETE"],
    "run": ["GET", "PATCH"],
    # A run's result and a result's run are both GET/PATCH in vantage6.
    "result": ["GET", "PATCH"],
}


# The API path of every link, read once: reading a setting costs about as much as building a reference
# (``settings`` resolves each attribute in Python). Kept current when the setting changes (tests).
API_PATH: str = settings.API_PATH


@receiver(setting_changed)
def _follow_api_path(*, setting: str, value: object, **_kwargs: object) -> None:
    global API_PATH
    if setting == "API_PATH":
        API_PATH = str(value)


def api_path(path: str) -> str:
    """``path`` (starting with '/') under the configured API path."""
    return f"{API_PATH}{path}"


def ref(resource: str, pk: int | None) -> dict | None:
    """A to-one reference, or ``None`` when there is no related object."""
    if pk is None:
        return None
    return {"id": pk, "link": f"{API_PATH}/{resource}/{pk}", "methods": DETAIL_METHODS[resource]}


def list_link(resource: str, **filters: object) -> str:
    """A to-many reference: the path of the list endpoint filtered to the related rows."""
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return f"{API_PATH}/{resource}?{query}"
