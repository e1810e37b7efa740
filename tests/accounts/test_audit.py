"""The audit trail: who reads which entries (/api/audit, the admin page), what is recorded about
logins, and that nothing changes or deletes an entry (the export: tests/ops/test_audit_export.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from accounts.login import name_digest
from accounts.models import AuditAction, AuditEntry, AuditTrailIsAppendOnly
from tests.admin.browser import Browser
from tests.factories import PASSWORD, bearer, make_org, make_user

pytestmark = pytest.mark.django_db


def _login(api, username: str, password: str = PASSWORD):
    return api.post("/api/token/user", {"username": username, "password": password}, format="json")


def _entries(api, caller, query: str = "") -> list[dict]:
    response = api.get(f"/api/audit?per_page=1000{query}", **bearer(caller))
    assert response.status_code == 200, response.content
    return response.json()["data"]


def _snapshot() -> list[tuple]:
    return list(AuditEntry.objects.order_by("id").values_list())


@pytest.fixture
def trail(api, world):
    """Three users (root, an Organization Admin of A, a Researcher of B) and entries of A, B and root."""
    root = make_user(make_org("root-org"), "Root")
    admin_a = make_user(world.org_a, "Organization Admin")
    user_b = make_user(world.org_b, "Researcher")
    created = api.post(
        "/api/user",
        {"username": "new-a", "email": "new-a@example.org", "password": PASSWORD, "roles": []},
        format="json",
        **bearer(admin_a),
    )
    assert created.status_code == 201
    assert _login(api, "new-a", "wrong").status_code == 401  # a failed login on a user of A
    assert _login(api, user_b.username).status_code == 200  # B logs in
    organization = api.post("/api/organization", {"name": "D"}, format="json", **bearer(root))
    assert organization.status_code == 201
    return {
        "root": root,
        "admin_a": admin_a,
        "user_b": user_b,
        "user_create": AuditEntry.objects.get(action=AuditAction.USER_CREATE, object_id=created.json()["id"]),
        "failed_a": AuditEntry.objects.get(action=AuditAction.USER_LOGIN_FAILED),
        "login_b": AuditEntry.objects.get(action=AuditAction.USER_LOGIN, actor_id=user_b.pk),
        "org_create": AuditEntry.objects.get(action=AuditAction.ORGANIZATION_CREATE),
    }


# --- who reads what -------------------------------------------------------------------------------------
def test_root_reads_every_entry(api, trail):
    ids = {row["id"] for row in _entries(api, trail["root"])}
    assert ids == set(AuditEntry.objects.values_list("id", flat=True))
    assert {"user_create", "failed_a", "login_b", "org_create"} <= {
        name for name, entry in trail.items() if isinstance(entry, AuditEntry) and entry.pk in ids
    }


def test_an_organization_admin_reads_the_entries_of_its_organization_only(api, world, trail):
    rows = _entries(api, trail["admin_a"])
    ids = {row["id"] for row in rows}
    assert trail["user_create"].pk in ids and trail["failed_a"].pk in ids
    assert trail["login_b"].pk not in ids and trail["org_create"].pk not in ids
    assert all(
        world.org_a.pk in (row["actor_organization_id"], row["object_organization_id"]) for row in rows
    )
    # Asking for another organization's entries gives none of them.
    assert _entries(api, trail["admin_a"], f"&organization_id={world.org_b.pk}") == []
    assert api.get(f"/api/audit/{trail['login_b'].pk}", **bearer(trail["admin_a"])).status_code == 401
    assert api.get(f"/api/audit/{trail['failed_a'].pk}", **bearer(trail["admin_a"])).status_code == 200


def test_a_user_without_an_audit_rule_reads_nothing(api, trail):
    response = api.get("/api/audit", **bearer(trail["user_b"]))
    assert response.status_code == 401
    assert "data" not in response.json()
    assert api.get(f"/api/audit/{trail['login_b'].pk}", **bearer(trail["user_b"])).status_code == 401
    assert api.get("/api/audit").status_code == 401


def test_a_node_reads_nothing(api, world, trail):  # noqa: ARG001
    assert api.get("/api/audit", **bearer(world.node_a)).status_code == 401


def test_an_entry_shows_who_did_what_to_which_object(api, world, trail):
    entry = trail["user_create"]
    body = api.get(f"/api/audit/{entry.pk}", **bearer(trail["root"])).json()
    assert body == {
        "id": entry.pk,
        "created_at": body["created_at"],
        "actor_type": "user",
        "actor_id": trail["admin_a"].pk,
        "actor_organization_id": world.org_a.pk,
        "action": "user.create",
        "object_type": "user",
        "object_id": entry.object_id,
        "object_organization_id": world.org_a.pk,
        "data": {"username": "new-a"},
    }
    assert datetime.fromisoformat(body["created_at"]) == entry.created_at


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("&action=user.create", {"user_create"}),
        ("&action=organization.create", {"org_create"}),
        ("&actor_type=anonymous", {"failed_a"}),
        ("&object_type=organization", {"org_create"}),
    ],
)
def test_filters(api, trail, query, expected):
    ids = {row["id"] for row in _entries(api, trail["root"], query)}
    named = {name: entry.pk for name, entry in trail.items() if isinstance(entry, AuditEntry)}
    assert {name for name, pk in named.items() if pk in ids} == expected


def test_filters_by_actor_object_and_time(api, trail):
    root, entry = trail["root"], trail["user_create"]
    by_actor = _entries(api, root, f"&actor_type=user&actor_id={trail['admin_a'].pk}")
    assert entry.pk in {row["id"] for row in by_actor}
    assert {row["actor_id"] for row in by_actor} == {trail["admin_a"].pk}
    by_object = _entries(api, root, f"&object_type=user&object_id={entry.object_id}")
    assert {row["action"] for row in by_object} == {"user.create", "user.login_failed"}
    moment = entry.created_at
    later = (moment + timedelta(seconds=1)).isoformat()
    assert entry.pk in {
        row["id"] for row in _entries(api, root, f"&since={moment.isoformat()}&until={later}")
    }
    assert _entries(api, root, f"&since={later}") == [
        row for row in _entries(api, root) if row["created_at"] >= later
    ]
    assert _entries(api, root, f"&until={moment.date().isoformat()}") == []


def test_paginated_like_every_list(api, trail):
    response = api.get("/api/audit?per_page=2&sort=-id", **bearer(trail["root"]))
    assert response.status_code == 200
    assert response["total-count"] == str(AuditEntry.objects.count())
    assert set(response.json()["links"]) >= {"first", "self", "next", "last"}
    ids = [row["id"] for row in response.json()["data"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2


@pytest.mark.parametrize(
    "query",
    [
        "action=user.explode",
        "since=yesterday",
        "until=2026-13-01",
        "actor_id=x",
        "object_id=1.5",
        "sort=color",
    ],
)
def test_bad_filters_are_a_400(api, trail, query):
    response = api.get(f"/api/audit?{query}", **bearer(trail["root"]))
    assert response.status_code == 400
    assert "msg" in response.json()


def test_ids_beyond_the_columns_find_nothing(api, trail):
    beyond = 2**40  # past a 32-bit column, within the 64 bits a filter takes
    for query in (f"actor_id={beyond}", f"object_id={beyond}", f"organization_id={beyond}"):
        response = api.get(f"/api/audit?{query}", **bearer(trail["root"]))
        assert response.status_code == 200 and response.json()["data"] == [], query
    assert api.get(f"/api/audit/{2**70}", **bearer(trail["root"])).status_code == 404


def test_filter_ids_beyond_64_bits_are_a_400(api, trail):
    huge = 2**70
    for query in (f"actor_id={huge}", f"object_id={huge}", f"organization_id={huge}"):
        response = api.get(f"/api/audit?{query}", **bearer(trail["root"]))
        assert response.status_code == 400 and "msg" in response.json(), query


# --- what is recorded about logins ---------------------------------------------------------------------
def test_logins_failed_logins_and_the_lock_out_are_recorded(api, world):
    user = make_user(world.org_a)
    assert _login(api, "nobody-here").status_code == 401
    unknown = AuditEntry.objects.get(action=AuditAction.USER_LOGIN_FAILED)
    assert (unknown.actor_type, unknown.object_id, unknown.data) == (
        "anonymous",
        None,
        {"reason": "unknown user", "name_digest": name_digest("nobody-here"), "address": "127.0.0.1"},
    )
    for _ in range(settings.PASSWORD_MAX_FAILED_ATTEMPTS):
        assert _login(api, user.username, "wrong").status_code == 401
    assert _login(api, user.username).status_code == 401  # locked, even with the right password
    about_user = AuditEntry.objects.filter(object_type="user", object_id=user.pk).order_by("id")
    assert [(e.actor_type, e.action, e.data.get("reason")) for e in about_user] == [
        *[("anonymous", "user.login_failed", "password")] * settings.PASSWORD_MAX_FAILED_ATTEMPTS,
        ("anonymous", "user.lock_out", None),
        ("anonymous", "user.login_failed", "locked"),
    ]
    assert {e.object_organization_id for e in about_user} == {world.org_a.pk}

    other = make_user(world.org_b)
    assert _login(api, other.username).status_code == 200
    login = AuditEntry.objects.get(action=AuditAction.USER_LOGIN)
    assert (login.actor_type, login.actor_id, login.actor_organization_id, login.object_id) == (
        "user",
        other.pk,
        world.org_b.pk,
        other.pk,
    )


def test_node_logins_revocations_and_key_resets_are_recorded(api, world):
    key = world.keys[world.node_a.pk]
    assert api.post("/api/token/node", {"api_key": key}, format="json").status_code == 200
    unknown_key = "00000000-0000-4000-8000-000000000000"
    assert api.post("/api/token/node", {"api_key": unknown_key}, format="json").status_code == 401
    admin = make_user(world.org_a, "Organization Admin")
    assert api.post("/api/token/revoke", {}, format="json", **bearer(admin)).status_code == 200
    reset = api.post("/api/recover/node", {"id": world.node_a.pk}, format="json", **bearer(admin))
    assert reset.status_code == 200
    # The organization admin of the node's organization reads all of it but the anonymous failure.
    rows = _entries(api, admin, "&sort=id")
    assert [(row["action"], row["actor_type"], row["object_id"]) for row in rows] == [
        ("node.login", "node", world.node_a.pk),
        ("token.revoke", "user", admin.pk),
        ("node.api_key_reset", "user", world.node_a.pk),
    ]
    failed = AuditEntry.objects.get(action=AuditAction.NODE_LOGIN_FAILED)
    assert (failed.actor_type, failed.object_id, failed.data) == ("anonymous", None, {"address": "127.0.0.1"})


# --- append-only --------------------------------------------------------------------------------------
def test_no_api_method_changes_or_deletes_an_entry(api, trail):
    before = _snapshot()
    entry = trail["user_create"]
    for method in ("post", "put", "patch", "delete"):
        for path in ("/api/audit", f"/api/audit/{entry.pk}"):
            response = getattr(api, method)(
                path, {"action": "user.delete"}, format="json", **bearer(trail["root"])
            )
            assert response.status_code == 405, (method, path)
    assert _snapshot() == before


def test_the_orm_refuses_changes_and_deletions(trail):
    before = _snapshot()
    entry = trail["user_create"]
    entry.action = AuditAction.USER_DELETE
    attempts = [
        entry.save,
        entry.delete,
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(action="user.delete"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        lambda: AuditEntry.objects.bulk_update([entry], ["action"]),
        lambda: AuditEntry.objects.update_or_create(pk=entry.pk, defaults={"action": "user.delete"}),
    ]
    for attempt in attempts:
        with pytest.raises(AuditTrailIsAppendOnly):
            attempt()
    # An entry saved with the id of an existing one is an insert that fails, never an overwrite.
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry(pk=entry.pk, actor_type="system", action=AuditAction.USER_DELETE).save()
    assert _snapshot() == before


def test_the_database_refuses_changes_and_on_postgresql_deletions(trail):
    before = _snapshot()
    entry = trail["user_create"]
    statements = ["UPDATE audit_entry SET action = 'user.delete' WHERE id = %s"]
    if connection.vendor == "postgresql":
        statements.append("DELETE FROM audit_entry WHERE id = %s")
    for sql in statements:
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [entry.pk])
    assert _snapshot() == before


def test_unknown_actions_are_refused():
    from accounts.audit import audit

    with pytest.raises(ValueError):
        audit(None, "user.explode")
    assert not AuditEntry.objects.filter(action="user.explode").exists()


# --- the admin page -------------------------------------------------------------------------------------
def test_the_admin_page_lists_the_entries_the_api_shows_and_changes_nothing(api, trail):
    browser = Browser(trail["admin_a"].username)
    before = _snapshot()
    page = browser.get("/admin/accounts/auditentry/", {"action__exact": "user.create"})
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    listed = {row.pk for row in browser.get("/admin/accounts/auditentry/").context["cl"].result_list}
    assert listed == {row["id"] for row in _entries(api, trail["admin_a"])}
    assert trail["login_b"].pk not in listed
    assert browser.get(f"/admin/accounts/auditentry/{trail['failed_a'].pk}/change/").status_code == 200
    # Another organization's entry is out of reach; nothing is added, changed or deleted.
    assert browser.get(f"/admin/accounts/auditentry/{trail['login_b'].pk}/change/").status_code == 302
    entry = trail["user_create"].pk
    csrf = {"csrfmiddlewaretoken": browser.client.cookies["csrftoken"].value}
    for path, data in (
        (f"/admin/accounts/auditentry/{entry}/change/", {"action": "user.delete", "actor_type": "system"}),
        (f"/admin/accounts/auditentry/{entry}/delete/", {"post": "yes"}),
        ("/admin/accounts/auditentry/add/", {"action": "user.delete", "actor_type": "system"}),
    ):
        assert browser.client.post(path, {**data, **csrf}).status_code == 403, path
    # No bulk actions: the "delete selected" of Django's admin is not offered.
    bulk = browser.client.post(
        "/admin/accounts/auditentry/", {"action": "delete_selected", "_selected_action": [entry], **csrf}
    )
    assert bulk.status_code == 200 and "delete_selected" not in bulk.content.decode()
    # Only declared filters: an undeclared lookup could probe the data of hidden entries.
    assert browser.get("/admin/accounts/auditentry/", {"data__contains": "x"}).status_code == 400
    assert browser.get("/admin/accounts/auditentry/", {"created_at__year": "2000"}).status_code == 200
    by_id = browser.get("/admin/accounts/auditentry/", {"q": str(trail["admin_a"].pk)}).context["cl"]
    assert trail["user_create"].pk in {row.pk for row in by_id.result_list}
    for term in ("abc", str(2**70)):
        assert browser.get("/admin/accounts/auditentry/", {"q": term}).status_code == 200, term
    assert _snapshot() == before


def test_the_admin_page_is_not_offered_without_an_audit_rule(world, trail):
    without = make_user(world.org_a, "Organization Admin")
    without.roles.clear()
    without.rules.add(*trail["admin_a"].roles.get().rules.exclude(name="audit"))
    assert Browser(without.username).get("/admin/accounts/auditentry/").status_code == 403
