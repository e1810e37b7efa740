"""Fixtures of the API-plumbing tests: a logged-in user of no special role and its headers."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_org, make_user


@pytest.fixture
def user(db):  # noqa: ARG001 - needs the database
    return make_user(make_org())


@pytest.fixture
def auth(user) -> dict[str, str]:
    return bearer(user)
