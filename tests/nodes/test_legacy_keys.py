"""Nodes whose API key came over from vantage6 as a bcrypt hash: login, the one-time upgrade to a digest,
the only nodes such a key is checked against."""

from __future__ import annotations

import uuid

import bcrypt
import pytest

from accounts.models import AuditEntry
from nodes.models import Node, api_key_digest

pytestmark = pytest.mark.django_db


def legacy(node: Node) -> str:
    """Give ``node`` a vantage6-style bcrypt hash of a new key; the key."""
    api_key = str(uuid.uuid4())
    node.api_key_hash = bcrypt.hashpw(api_key.encode(), bcrypt.gensalt(rounds=4)).decode()
    node.save(update_fields=["api_key_hash"])
    return api_key


def login(api, api_key: str):
    return api.post("/api/token/node", {"api_key": api_key}, format="json")


def hashes() -> dict[int, str]:
    return dict(Node.objects.values_list("pk", "api_key_hash"))


def test_a_legacy_key_logs_in_once_by_bcrypt_then_by_its_digest(api, world):
    api_key = legacy(world.node_a)
    other_legacy = legacy(world.node_b)
    before = hashes()

    response = login(api, api_key.upper())  # the key is a UUID: any spelling of it

    assert response.status_code == 200, response.content
    assert response.json()["node_url"] == f"/api/node/{world.node_a.pk}"
    after = hashes()
    assert after[world.node_a.pk] == api_key_digest(api_key)
    assert {pk: h for pk, h in after.items() if pk != world.node_a.pk} == {
        pk: h for pk, h in before.items() if pk != world.node_a.pk
    }
    assert AuditEntry.objects.filter(action="node.api_key_upgrade", object_id=world.node_a.pk).count() == 1
    # From now on the digest finds it; the other legacy node still logs in with its own key.
    assert login(api, api_key).status_code == 200
    assert login(api, other_legacy).status_code == 200
    assert AuditEntry.objects.filter(action="node.api_key_upgrade").count() == 2


def test_an_unknown_key_is_checked_only_against_legacy_hashes_and_changes_nothing(api, world, monkeypatch):
    legacy(world.node_a)
    legacy(world.node_b)  # node_c keeps its digest
    before, audits = hashes(), AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    checked = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: checked.append(h) or real_checkpw(pw, h))

    response = login(api, str(uuid.uuid4()))

    assert response.status_code == 401
    assert response.json() == {"msg": "Api key is not recognized!"}
    assert sorted(h.decode() for h in checked) == sorted(before[n.pk] for n in (world.node_a, world.node_b))
    assert hashes() == before
    # Only the failed login is recorded.
    assert list(AuditEntry.objects.filter(pk__gt=audits).values_list("action", flat=True)) == [
        "node.login_failed"
    ]
