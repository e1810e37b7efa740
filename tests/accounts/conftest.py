"""Fixtures of the identity tests: a user, an organization admin and a root of the world, e-mail switched on,
two-factor authentication switched on."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.mail.backends import locmem
from django.utils import timezone

from accounts import mail
from accounts.catalogue import ORG_ADMIN, ROOT
from tests.factories import PASSWORD, make_org, make_user


@pytest.fixture
def org(db):  # noqa: ARG001 - needs the database
    return make_org("home")


@pytest.fixture
def user(org):
    return make_user(org, "Viewer", username="alice")


@pytest.fixture
def admin_a(world):
    return make_user(world.org_a, ORG_ADMIN, username="admin_a")


@pytest.fixture
def root(world):
    return make_user(world.org_a, ROOT, username="rooty")


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


def delivered(outbox: list) -> list:
    """``outbox`` once every e-mail queued so far has been sent (they leave after the response)."""
    mail.wait_sent()
    return outbox


def median_seconds(
    calls: dict[str, Callable[[], object]], times: int = 5, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """The median duration of each call by ``clock``; the calls take turns, so a busy moment hits them
    all."""
    durations: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(times):
        for name, call in calls.items():
            start = clock()
            call()
            durations[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in durations.items()}


class SlowMailBackend(locmem.EmailBackend):
    """The test outbox behind a mail server that takes a while to accept a message."""

    DELAY = 0.3

    def send_messages(self, messages: list) -> int:
        time.sleep(self.DELAY)
        return super().send_messages(messages)
