"""Passwords longer than bcrypt takes (72 bytes): refused as new passwords, checked as vantage6 did."""

from __future__ import annotations

import bcrypt
import pytest

from accounts.login import PURPOSE_PASSWORD, issue_reset_token
from accounts.models import AuditEntry, User
from tests.factories import PASSWORD, bearer, make_user

pytestmark = pytest.mark.django_db

LONG = "Aa1!" + "x" * 69  # 73 bytes
ACCENTED = "Aa1!" + "é" * 35  # 39 characters, 74 bytes
AT_THE_LIMIT = "Aa1!" + "x" * 68  # 72 bytes
TOO_LONG = {
    "password": [
        "Password must be at most 72 bytes in UTF-8, every character counted as the widest of them: at most "
        "72 characters ASCII, 36 characters up to U+07FF, 24 characters up to U+FFFF, 18 characters of any"
    ]
}


def _create(api, root, password):
    body = {"username": "new", "email": "new@example.org", "password": password, "roles": []}
    return api.post("/api/user", body, format="json", **bearer(root))


def _change(api, user, password):
    body = {"current_password": PASSWORD, "new_password": password}
    return api.patch("/api/password/change", body, format="json", **bearer(user))


def _reset(api, user, password):
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    return api.post("/api/recover/reset", {"reset_token": token, "password": password}, format="json")


@pytest.mark.parametrize("password", [LONG, ACCENTED], ids=["73 ASCII bytes", "74 bytes in 39 characters"])
@pytest.mark.parametrize(
    ("write", "field"),
    [(_create, "password"), (_change, "new_password"), (_reset, "password")],
    ids=["new user", "password change", "password reset"],
)
def test_a_new_password_beyond_72_bytes_is_a_400(api, world, write, field, password):
    user = make_user(world.org_a, "Root")
    before = (list(User.objects.values_list("pk", "password")), AuditEntry.objects.count())
    response = write(api, user, password)
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {field: TOO_LONG["password"]}
    assert (list(User.objects.values_list("pk", "password")), AuditEntry.objects.count()) == before


def test_a_password_of_72_bytes_is_taken(api, world):
    user = make_user(world.org_a, "Root")
    assert _change(api, user, AT_THE_LIMIT).status_code == 200
    body = {"username": user.username, "password": AT_THE_LIMIT}
    assert api.post("/api/token/user", body, format="json").status_code == 200


def test_a_long_password_set_in_vantage6_still_logs_in(api, world):
    """vantage6's bcrypt used the first 72 bytes of a longer password; an imported hash is checked so."""
    user = make_user(world.org_a)
    long_password = LONG + "y" * 20
    user.password = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4)).decode()
    user.save()
    for password, status in [(long_password, 200), (long_password[:72], 200), ("wrong" + long_password, 401)]:
        body = {"username": user.username, "password": password}
        assert api.post("/api/token/user", body, format="json").status_code == status
