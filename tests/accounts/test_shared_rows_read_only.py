"""Rows every scope may view but only global rules may change: the link of an algorithm store to all
collaborations and the built-in roles. Below global scope the admin shows them read-only and refuses a
posted change."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db.models import Model

from accounts.catalogue import COL_ADMIN, ORG_ADMIN, VIEWER
from accounts.models import Role
from collaborations.models import AlgorithmStore
from tests.admin.browser import Browser
from tests.factories import make_user

pytestmark = pytest.mark.django_db

# (admin page, the role of the editor, the shared row)
SHARED: list[tuple[str, str, Callable[[], Model]]] = [
    (
        "collaborations/algorithmstore",
        COL_ADMIN,
        lambda: AlgorithmStore.objects.create(
            name="all", url="https://all.example.org/api", collaboration=None
        ),
    ),
    ("accounts/role", ORG_ADMIN, lambda: Role.objects.get(name=VIEWER, is_default_role=True)),
]


@pytest.mark.parametrize(("page", "role", "shared"), SHARED, ids=[page for page, *_ in SHARED])
def test_a_row_shared_by_all_is_read_only_below_global_scope(world, page, role, shared):
    make_user(world.org_a, role, username="editor_a")
    browser = Browser("editor_a")
    row = shared()
    before = type(row)._default_manager.filter(pk=row.pk).values().get()

    change = browser.get(f"/admin/{page}/{row.pk}/change/")
    assert change.status_code == 200  # viewable
    assert 'name="_save"' not in change.content.decode()  # not editable
    posted = browser.client.post(f"/admin/{page}/{row.pk}/change/", {"name": "renamed"})
    assert posted.status_code == 403
    assert type(row)._default_manager.filter(pk=row.pk).values().get() == before
