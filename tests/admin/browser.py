"""The admin as a browser drives it: the login form, a session cookie, and the CSRF token of each form."""

from __future__ import annotations

import re
from html.parser import HTMLParser

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

    def submit(self, path: str, changes: dict):
        """Fill in the form of the page at ``path`` as shown, change some fields, and send it."""
        page = self.client.get(path)
        assert page.status_code == 200, (path, page.status_code)
        form = FormValues()
        form.feed(page.content.decode())
        return self.client.post(path, {**form.values, **changes})


class FormValues(HTMLParser):
    """The values a browser sends for the main form of an admin page, without its submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, object] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def _add(self, name: str, value: str, multiple: bool = False) -> None:
        if multiple:
            self.values.setdefault(name, []).append(value)
        else:
            self.values[name] = value

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "checkbox", "radio", "file"):
            self._add(name, a.get("value") or "")
        elif tag == "input" and name and a.get("type") in ("checkbox", "radio") and "checked" in a:
            self._add(name, a.get("value") or "on")
        elif tag == "select" and name:
            self._select, self._multiple = name, "multiple" in a
            if self._multiple:
                self.values.setdefault(name, [])
        elif tag == "option" and self._select and "selected" in a:
            self._add(self._select, a.get("value") or "", self._multiple)
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data.strip("\n")


def audit_trail(after: int = 0) -> list[tuple]:
    """The audit entries after id ``after``, without their ids and times."""
    rows = AuditEntry.objects.filter(pk__gt=after).order_by("pk")
    return [(r.actor_type, r.actor_id, r.action, r.object_type, r.object_id, r.data) for r in rows]


def last_audit_id() -> int:
    return AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
