"""A Collaboration Admin taking over the account of a partner's user, whose rules reach into collaborations
the admin is not in: through that user it would act there. Each way of taking an account over is refused
while the partner works elsewhere too, and still works for partners within the admin's collaborations."""

from __future__ import annotations

import pytest

from accounts.models import Role, Rule
from tests.admin.browser import Browser
from tests.factories import PASSWORD, bearer, make_collab, make_org, make_task, make_user
from tests.test_attacker_sweep import _state

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Another-pass1!"
# (method, path, body): each hands the account to the caller (the e-mail: through password recovery) or
# changes what it may do.
TAKEOVERS = [
    ("patch", "/api/user/{target}", {"email": "mine@example.org"}),
    ("patch", "/api/user/{target}", {"roles": []}),
    ("patch", "/api/user/{target}", {"rules": []}),
]
TARGETS = ["Researcher", "Organization Admin", "Collaboration Admin"]


@pytest.fixture
def admin_a(world):
    return bearer(make_user(world.org_a, "Collaboration Admin", username="col-admin-a"))


def _works_elsewhere(world) -> None:
    """B also works with D, without A."""
    bd = make_collab(world.org_b, make_org("D"), name="BD")
    make_task(bd, world.org_b, world.org_b, name="zzd-task")


def _send(api, admin: dict, method: str, path: str, body: dict | None, target: int):
    return getattr(api, method)(path.format(target=target), body, format="json", **admin)


@pytest.mark.parametrize("role", TARGETS)
@pytest.mark.parametrize(("method", "path", "body"), TAKEOVERS)
def test_no_account_of_a_partner_that_works_elsewhere_is_taken_over(
    api, world, admin_a, role, method, path, body
):
    _works_elsewhere(world)
    target = make_user(world.org_b, role, username="target-b")
    before = _state()

    response = _send(api, admin_a, method, path, body, target.pk)

    assert response.status_code == 401, response.content
    assert "collaborations you are not in" in response.json()["msg"]
    assert _state() == before


@pytest.mark.parametrize("role", TARGETS)
@pytest.mark.parametrize(("method", "path", "body"), TAKEOVERS)
def test_the_accounts_of_partners_within_the_collaborations_are_still_managed(
    api, world, admin_a, role, method, path, body
):
    target = make_user(world.org_b, role, username="target-b")
    assert _send(api, admin_a, method, path, body, target.pk).status_code == 200


def test_nor_a_new_password_through_the_admin_site(world):
    _works_elsewhere(world)
    make_user(world.org_a, "Collaboration Admin", username="col-admin-a")
    target = make_user(world.org_b, "Organization Admin", username="target-b")
    browser = Browser("col-admin-a")
    before = _state()

    response = browser.submit(f"/admin/accounts/user/{target.pk}/change/", {"new_password": NEW_PASSWORD})

    # the partner, also in C, is not A's to change: its users' pages are read-only
    assert response.status_code == 403
    assert _state() == before
    target.refresh_from_db()
    assert target.check_password(PASSWORD)
    assert Role.objects.filter(users=target).exists()


@pytest.mark.parametrize("scope", ["ORGANIZATION", "COLLABORATION"])
def test_no_rule_of_a_partner_that_works_elsewhere_reaches_there(api, world, admin_a, scope):
    """Organization scope reaches the partner's own rows in its other collaborations as well."""
    _works_elsewhere(world)
    target = make_user(world.org_b, username="target-b")
    rule = Rule.objects.get(name="task", scope=scope, operation="VIEW")
    before = _state()

    response = _send(api, admin_a, "patch", "/api/user/{target}", {"rules": [rule.pk]}, target.pk)

    assert response.status_code == 401, response.content
    assert "collaborations you are not in" in response.json()["msg"]
    assert _state() == before
