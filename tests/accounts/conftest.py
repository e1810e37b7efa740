"""Fixtures of the identity tests: a user, e-mail switched on, two-factor authentication switched on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import PASSWORD, make_org, make_user


@pytest.fixture
def org(db):  # noqa: ARG001 - needs the database
    return make_org("home")


@pytest.fixture
def user(org):
    return make_user(org, "Viewer", username="alice")


@pytest.fixture
def smtp(settings):
    """A server that can send e-mail (the messages land in ``mailoutbox``)."""
    settings.SMTP_CONFIGURED = True
    return settings


@pytest.fixture
def two_factor(settings):
    settings.TWO_FACTOR_AUTH = True
    return settings


def login(api, username: str = "alice", password: str = PASSWORD, **extra):
    return api.post("/api/token/user", {"username": username, "password": password, **extra}, format="json")


def minutes_ago(minutes: float):
    return timezone.now() - timedelta(minutes=minutes)
