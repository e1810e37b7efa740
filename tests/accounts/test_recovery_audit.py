"""Each recovery that changes an account's credentials leaves one audit record naming the account; a
refused one leaves none."""

from __future__ import annotations

import pytest

from accounts.login import PURPOSE_2FA, PURPOSE_PASSWORD, issue_reset_token
from accounts.models import AuditAction, AuditEntry

pytestmark = pytest.mark.django_db

RECOVERIES = [
    (PURPOSE_PASSWORD, "/api/recover/reset", {"password": "Brand-new1"}, AuditAction.USER_PASSWORD_RESET),
    (PURPOSE_2FA, "/api/recover/2fa/reset", {}, AuditAction.USER_2FA_RESET),
]


def _trail() -> list[tuple]:
    return list(AuditEntry.objects.order_by("id").values_list("action", "object_type", "object_id"))


@pytest.mark.parametrize(("purpose", "path", "body", "action"), RECOVERIES, ids=["password", "two-factor"])
def test_a_reset_is_recorded_once_for_its_account(api, user, purpose, path, body, action):
    token = issue_reset_token(user, purpose)
    before = _trail()

    assert api.post(path, {"reset_token": token, **body}, format="json").status_code == 200
    assert api.post(path, {"reset_token": token, **body}, format="json").status_code == 400  # used up

    assert _trail()[len(before) :] == [(action.value, "user", user.pk)]


@pytest.mark.parametrize(("purpose", "path", "body", "action"), RECOVERIES, ids=["password", "two-factor"])
def test_a_refused_reset_is_not_recorded(api, user, purpose, path, body, action):  # noqa: ARG001
    other = PURPOSE_2FA if purpose == PURPOSE_PASSWORD else PURPOSE_PASSWORD
    before = _trail()

    for token in ("garbage", issue_reset_token(user, other)):
        assert api.post(path, {"reset_token": token, **body}, format="json").status_code == 400

    assert _trail() == before
