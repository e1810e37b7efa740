"""A store chosen by a collaboration administrator answers with JSON nested deeper than a JSON reader
goes: its answer is unreadable like any other that is no store's, never a 500."""

from __future__ import annotations

import pytest

from tests.collaborations.helpers import FakeStore, headers_of
from tests.collaborations.test_store_outbound import nothing_registered, register

pytestmark = pytest.mark.django_db

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("status", [400, 403])
def test_a_store_answer_nested_too_deep_is_no_store_answer(api, world, settings, status):
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True
    with FakeStore() as store:
        store.routes[("POST", "/vantage6-server")] = (status, DEEP)
        store.routes[("GET", "/policy/public")] = (200, DEEP)
        response = register(api, store.url, headers=headers_of(world.org_a, "Root"))
    assert response.status_code in (400, 403, 502), response.content
    assert response.json()["msg"] == f"Algorithm store error: the store answered with status {status}"
    assert nothing_registered()
