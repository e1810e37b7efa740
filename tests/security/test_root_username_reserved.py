"""``createroot`` gives the account named ``root`` a new password and the Root role back. Once root renamed
itself (or was deleted), another account taking that name, its own by a rename or one its organization's
administrator creates, was made root at the operator's next ``createroot``; and its owner, whose e-mail
address it keeps, recovers the password the operator set."""

from __future__ import annotations

import pytest

from accounts.models import User
from accounts.services import root_password_reset, root_user_ensure
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Root-pass-9!"


def _renames_itself(api, world) -> tuple[int, User]:
    researcher = make_user(world.org_a, "Researcher")
    headers = bearer(researcher)
    response = api.patch(f"/api/user/{researcher.pk}", {"username": "root"}, format="json", **headers)
    return response.status_code, researcher


def _created_by_an_organization_admin(api, world) -> tuple[int, User | None]:
    body = {"username": "root", "email": "taker@example.org", "password": "Pass-word-123!"}
    headers = bearer(make_user(world.org_a, "Organization Admin"))
    response = api.post("/api/user", body, format="json", **headers)
    return response.status_code, User.objects.filter(email="taker@example.org").first()


@pytest.mark.parametrize("take", [_renames_itself, _created_by_an_organization_admin])
def test_nobody_takes_the_name_of_a_renamed_root(api, world, take):
    root = root_user_ensure(password=NEW_PASSWORD).user
    personal = {"username": "site-root", "email": "site-root@example.org"}
    renamed = api.patch(f"/api/user/{root.pk}", personal, format="json", **bearer(root))
    assert renamed.status_code == 200, renamed.content

    status, taker = take(api, world)
    assert status == 400

    root_password_reset(password=NEW_PASSWORD)  # the operator's createroot
    new_root = User.objects.get(username="root")
    assert new_root.organization.name == "root"
    assert taker is None or not taker.roles.filter(name="Root").exists()
