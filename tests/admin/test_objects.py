"""An admin page reaches one row only through the rule engine: a row out of the logged-in user's
scope answers as a missing one on its change, history and delete pages, and a posted form changes
nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db.models import Model

from accounts.catalogue import ORG_ADMIN
from accounts.models import AuditEntry, Role
from collaborations.models import AlgorithmStore
from tests.admin.browser import CSRF, Browser, last_audit_id
from tests.factories import make_study, make_user

pytestmark = pytest.mark.django_db

# (page, the row of organization C / collaboration C, a row of A / AB the same admin does reach)
PAGES: list[tuple[str, Callable, Callable]] = [
    ("accounts/user", lambda w: make_user(w.org_c), lambda w: make_user(w.org_a)),
    (
        "accounts/role",
        lambda w: Role.objects.create(name="r", organization=w.org_c),
        lambda w: Role.objects.create(name="r", organization=w.org_a),
    ),
    ("collaborations/organization", lambda w: w.org_c, lambda w: w.org_a),
    ("collaborations/collaboration", lambda w: w.collab_c, lambda w: w.collab_ab),
    (
        "collaborations/study",
        lambda w: make_study(w.collab_c, w.org_c),
        lambda w: make_study(w.collab_ab, w.org_a),
    ),
    (
        "collaborations/algorithmstore",
        lambda w: AlgorithmStore.objects.create(name="c", url="https://c.org/api", collaboration=w.collab_c),
        lambda w: AlgorithmStore.objects.create(name="a", url="https://a.org/api", collaboration=w.collab_ab),
    ),
    ("nodes/node", lambda w: w.node_c, lambda w: w.node_a),
    (
        "accounts/auditentry",
        lambda w: AuditEntry.objects.create(actor_type="user", action="x", actor_organization_id=w.org_c.pk),
        lambda w: AuditEntry.objects.create(actor_type="user", action="x", actor_organization_id=w.org_a.pk),
    ),
]  # fmt: skip


def _row(obj: Model) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _stored(obj: Model) -> dict | None:
    found = type(obj)._default_manager.filter(pk=obj.pk).first()
    return _row(found) if found is not None else None


def _answer(response) -> tuple:
    return response.status_code, response.get("Location")


@pytest.mark.parametrize(("page", "outside", "inside"), PAGES, ids=[page for page, *_ in PAGES])
def test_a_row_out_of_scope_is_missing_for_the_admin(world, page, outside, inside):
    make_user(world.org_a, ORG_ADMIN, username="admin_a")
    browser = Browser("admin_a")
    hidden, shown = outside(world), inside(world)
    assert browser.get(f"/admin/{page}/{shown.pk}/change/").status_code == 200
    before, start = _stored(hidden), last_audit_id()
    missing_pk = hidden.pk + 100_000

    for view in ("change", "history", "delete"):
        response = browser.get(f"/admin/{page}/{hidden.pk}/{view}/")
        missing = browser.get(f"/admin/{page}/{missing_pk}/{view}/")
        # The answer to a missing row: back to the index, or refused where no such page is offered.
        assert response.status_code in (302, 403), view
        assert _answer(response) == _answer(missing), view
        if response.status_code == 302:
            followed = browser.get("/admin/").content.decode()
            assert f"ID “{hidden.pk}” doesn\N{RIGHT SINGLE QUOTATION MARK}t exist" in followed, view

    token = CSRF.search(browser.get("/admin/").content.decode())
    assert token
    for view, data in (("change", {"name": "taken"}), ("delete", {"post": "yes"})):
        response = browser.client.post(
            f"/admin/{page}/{hidden.pk}/{view}/", {**data, "csrfmiddlewaretoken": token.group(1)}
        )
        assert response.status_code in (302, 403), view
        assert response.get("Location") in (None, "/admin/"), view
    assert _stored(hidden) == before
    assert last_audit_id() == start


@pytest.mark.parametrize("object_id", ["abc", "1.5", "99999999999999999999", "-1"])
def test_a_malformed_id_is_missing_for_the_admin(world, object_id):
    make_user(world.org_a, ORG_ADMIN, username="admin_a")
    response = Browser("admin_a").get(f"/admin/accounts/user/{object_id}/change/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")
