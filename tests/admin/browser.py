"""The admin as a browser drives it: the login form, a session cookie, and the CSRF token of each form."""

from __future__ import annotations

import re

from django.test import Client

from accounts.models import AuditEntry
from tests.factories import PASSWORD

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Browser:
    def __init__(self, username: str) -> None:
        self.client = Client(enforce_csrf_checks=True)
        response = self.post("/admin/login/?next=/admin/", {"username": username, "password": PASSWORD})
        assert response.status_code == 302 and response["Location"] == "/admin/", response.content[:500]

    def get(self, path: str, params: dict | None = None):
        return self.client.get(path, params or {})

    def post(self, path: str, data: dict):
        """Open the page of the form first and send its CSRF token back, as a browser does."""
        page = self.client.get(path)
        token = CSRF.search(page.content.decode())
        assert token, f"no form on {path} ({page.status_code})"
        return self.client.post(path, {**data, "csrfmiddlewaretoken": token.group(1)})


def audit_trail(after: int = 0) -> list[tuple]:
    """The audit entries after id ``after``, without their ids and times."""
    rows = AuditEntry.objects.filter(pk__gt=after).order_by("pk")
    return [(r.actor_type, r.actor_id, r.action, r.object_type, r.object_id, r.data) for r in rows]


def last_audit_id() -> int:
    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
