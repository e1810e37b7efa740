"""``manage.py audit_export``: the audit trail as JSON lines, with the fields of ``GET /api/audit``."""

from __future__ import annotations

import json

import pytest

from accounts.audit import audit
from accounts.models import AuditAction, AuditEntry
from accounts.serializers import AuditEntryOutput
from tests.factories import make_org, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail() -> dict[str, AuditEntry]:
    user = make_user(make_org("A"))
    audit(None, AuditAction.USER_CREATE, user, username=user.username)
    audit(None, AuditAction.ORGANIZATION_CREATE, make_org("D"))
    return {
        "user_create": AuditEntry.objects.get(action=AuditAction.USER_CREATE),
        "org_create": AuditEntry.objects.get(action=AuditAction.ORGANIZATION_CREATE),
    }


def test_export_writes_json_lines_with_the_fields_of_the_api(manage, trail):
    since = trail["user_create"].created_at.isoformat()
    outcome = manage("audit_export", "--since", since)
    assert outcome.code == 0, outcome.err
    lines = [json.loads(line) for line in outcome.out.splitlines()]
    expected = AuditEntry.objects.filter(created_at__gte=trail["user_create"].created_at).order_by("id")
    assert lines == [AuditEntryOutput(entry).data for entry in expected]
    assert lines[0]["id"] == trail["user_create"].pk

    only = manage("audit_export", "--since", "2000-01-01", "--action", "organization.create")
    assert [json.loads(line)["id"] for line in only.out.splitlines()] == [trail["org_create"].pk]
    assert manage("audit_export", "--since", "2999-01-01").out == ""


@pytest.mark.parametrize(
    "argv", [(), ("--since", "yesterday"), ("--since", "2000-01-01", "--action", "user.explode")]
)
def test_export_refuses_bad_arguments(manage, argv):
    outcome = manage("audit_export", *argv)
    assert outcome.code != 0
    assert outcome.out == ""
