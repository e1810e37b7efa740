"""``sort=`` only on the fields a list shows: no ordering oracle on secret columns."""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_org, make_user

# Columns a caller never sees, per list endpoint; sorting by them would leak their order.
SECRET_COLUMNS = [
    ("/api/user", "password"),
    ("/api/user", "otp_secret"),
    ("/api/user", "failed_login_attempts"),
    ("/api/user", "last_login_attempt"),
    ("/api/user", "authenticatable_ptr"),
    ("/api/node", "api_key_hash"),
]


@pytest.fixture
def root(db):  # noqa: ARG001 - needs the database
    org = make_org("root-org")
    return make_user(org, "Root")


@pytest.mark.parametrize(("path", "column"), SECRET_COLUMNS)
@pytest.mark.parametrize("descending", ["", "-"])
def test_sorting_by_a_hidden_column_is_refused(api, root, path, column, descending):
    make_user(root.organization, username="other")
    response = api.get(f"{path}?sort={descending}{column}", **bearer(root))
    assert response.status_code == 400, response.content
    assert column in response.json()["msg"]


@pytest.mark.parametrize(
    ("path", "column"),
    [("/api/user", "username"), ("/api/user", "organization"), ("/api/user", "organization_id"),
     ("/api/user", "last_seen"), ("/api/node", "name"), ("/api/organization", "name")],
)  # fmt: skip
def test_sorting_by_a_shown_column_still_works(api, root, path, column):
    assert api.get(f"{path}?sort=-{column}", **bearer(root)).status_code == 200


def test_order_by_password_hash_reveals_nothing(api, root):
    """Two users whose hashes sort one way: the answer is the same 400 whichever way round."""
    make_user(root.organization, username="aaa")
    make_user(root.organization, username="zzz")
    answers = {api.get(f"/api/user?sort={order}password", **bearer(root)).content for order in ("", "-")}
    assert len(answers) == 1
