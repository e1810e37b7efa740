"""Guesses counted while their password is checked: they stop counting when their check cannot be
running any more, and an outcome that comes after that must find room like a new guess."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts import login as login_module
from accounts.models import AuditAction, AuditEntry, LoginCheck, LoginSession, User
from tests.accounts.conftest import login

pytestmark = pytest.mark.django_db

FAILED = {"msg": "Failed to login"}
LONG_AGO = timedelta(seconds=login_module.CHECKS_IN_FLIGHT_SECONDS + 1)


def stopped_checks(user: User, count: int) -> None:
    """Guesses counted by a process that stopped before their checks ended."""
    started = timezone.now() - LONG_AGO
    LoginCheck.objects.bulk_create(LoginCheck(user=user, started_at=started) for _ in range(count))


def test_checks_of_a_stopped_process_do_not_count(api, user):
    stopped_checks(user, settings.PASSWORD_MAX_FAILED_ATTEMPTS)

    response = login(api)

    assert response.status_code == 200
    assert not LoginCheck.objects.exists()
    user.refresh_from_db()
    assert user.failed_login_attempts == 0


@pytest.fixture
def slow_check(monkeypatch):
    """Password checks that outlive their count; ``meanwhile`` runs during each check."""
    meanwhile = []
    check_password = User.check_password

    def slow(user: User, password: str) -> bool:
        LoginCheck.objects.filter(user=user).update(started_at=timezone.now() - LONG_AGO)
        for step in meanwhile:
            step(user)
        return check_password(user, password)

    monkeypatch.setattr(User, "check_password", slow)
    return meanwhile


def block(user: User) -> None:
    User.objects.filter(pk=user.pk).update(
        failed_login_attempts=settings.PASSWORD_MAX_FAILED_ATTEMPTS, last_login_attempt=timezone.now()
    )


@pytest.mark.parametrize("password", ["wrong", None])
def test_a_check_that_outlived_its_count_is_refused_once_the_account_is_blocked(
    api, user, slow_check, password
):
    # Its count no longer held a place: others were checked meanwhile and blocked the account.
    slow_check.append(block)
    before = list(AuditEntry.objects.values_list("pk", flat=True))

    response = login(api, **({"password": password} if password else {}))

    assert (response.status_code, response.json()) == (401, FAILED)
    user.refresh_from_db()
    assert user.failed_login_attempts == settings.PASSWORD_MAX_FAILED_ATTEMPTS
    assert not LoginSession.objects.filter(identity=user).exists()
    assert not LoginCheck.objects.exists()
    new = AuditEntry.objects.exclude(pk__in=before)
    assert [(e.action, e.data["reason"]) for e in new] == [(AuditAction.USER_LOGIN_FAILED, "locked")]


@pytest.mark.usefixtures("user", "slow_check")
def test_a_check_that_outlived_its_count_passes_when_there_is_room(api):
    response = login(api)

    assert response.status_code == 200
    assert not LoginCheck.objects.exists()


@pytest.mark.usefixtures("slow_check")
def test_a_wrong_guess_that_outlived_its_count_fails_when_there_is_room(api, user):
    response = login(api, password="wrong")

    assert (response.status_code, response.json()) == (401, FAILED)
    user.refresh_from_db()
    assert user.failed_login_attempts == 1
    assert not LoginCheck.objects.exists()
