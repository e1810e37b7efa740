"""The read-only rule catalogue: /api/rule."""

from __future__ import annotations

import pytest

from accounts.catalogue import OPERATIONS, RULES, SCOPES, seed_rules_and_roles
from accounts.models import Role, Rule
from tests.factories import bearer, make_org, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    return make_user(make_org(), "Viewer")


def test_catalogue_has_the_86_vantage6_rules_then_the_audit_rules_and_the_builtin_roles():
    assert Rule.objects.count() == 88
    counts = {role.name: role.rules.count() for role in Role.objects.filter(is_default_role=True)}
    assert counts == {
        "Root": 88, "container": 8, "node": 10, "Viewer": 15, "Researcher": 17,
        "Organization Admin": 26, "Collaboration Admin": 42,
    }  # fmt: skip


def test_vantage6_rules_keep_their_ids_and_the_audit_rules_come_after_them():
    rows = list(Rule.objects.order_by("id").values_list("id", "name", "scope", "operation"))
    expected = [
        (position, name, SCOPES[scope], OPERATIONS[operation])
        for position, (name, scope, operation, *_) in enumerate(RULES, start=1)
    ]
    assert rows == expected
    assert [row[1] for row in rows[86:]] == ["audit", "audit"]
    assert "audit" not in {row[1] for row in rows[:86]}
    admin_rules = Role.objects.get(name="Organization Admin").rules
    assert set(admin_rules.filter(name="audit").values_list("scope", "operation")) == {
        ("ORGANIZATION", "VIEW")
    }


def test_seeding_again_changes_nothing_and_restores_builtin_rule_sets():
    viewer = Role.objects.get(name="Viewer")
    before = set(viewer.rules.values_list("id", flat=True))
    viewer.rules.remove(*viewer.rules.all()[:3])
    seed_rules_and_roles()
    seed_rules_and_roles()
    assert set(viewer.rules.values_list("id", flat=True)) == before
    assert Rule.objects.count() == 88


def test_rule_list_needs_a_token(api):
    response = api.get("/api/rule")
    assert response.status_code == 401
    assert response.json() == {"msg": "Missing Authorization Header"}


def test_rule_list_filters_by_scope_code_or_name(api, viewer):
    by_code = api.get("/api/rule?scope=glo&operation=v&per_page=100", **bearer(viewer)).json()["data"]
    by_name = api.get("/api/rule?scope=GLOBAL&operation=VIEW&per_page=100", **bearer(viewer)).json()["data"]
    assert by_code == by_name
    assert {rule["name"] for rule in by_code} == {
        "node", "collaboration", "organization", "task", "run", "user", "role", "port", "study", "audit",
    }  # fmt: skip
    assert all(rule["scope"] == "GLOBAL" and rule["operation"] == "VIEW" for rule in by_code)


def test_rule_list_of_a_user_is_the_union_of_roles_and_direct_rules(api, viewer):
    extra = Rule.objects.get(name="task", scope="GLOBAL", operation="VIEW")
    viewer.rules.add(extra)
    response = api.get(f"/api/rule?user_id={viewer.pk}&no_pagination=1", **bearer(viewer))
    ids = {rule["id"] for rule in response.json()["data"]}
    expected = set(Role.objects.get(name="Viewer").rules.values_list("id", flat=True)) | {extra.pk}
    assert ids == expected
    assert response["total-count"] == str(len(expected))


def test_rule_list_unknown_role_is_a_400(api, viewer):
    # to who views every role; to anyone else, as a role it may not view
    root = make_user(make_org("root-org"), "Root")
    response = api.get("/api/rule?role_id=9999", **bearer(root))
    assert response.status_code == 400
    assert "msg" in response.json()
    assert api.get("/api/rule?role_id=9999", **bearer(viewer)).status_code == 401


def test_rule_detail_and_404(api, viewer):
    rule = Rule.objects.get(name="user", scope="OWN", operation="EDIT")
    body = api.get(f"/api/rule/{rule.pk}", **bearer(viewer)).json()
    assert body == {
        "id": rule.pk, "name": "user", "description": "Edit your own info", "scope": "OWN",
        "operation": "EDIT", "users": f"/api/user?rule_id={rule.pk}",
    }  # fmt: skip
    missing = api.get("/api/rule/100000", **bearer(viewer))
    assert missing.status_code == 404
    assert "msg" in missing.json()
