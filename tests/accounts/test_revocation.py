"""Taking tokens back: ended logins, single-use refresh tokens, the login lifetime and logging out."""

# The API key resets of one table share one signature; not every one needs every argument.
# ruff: noqa: ARG001

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import AuditEntry, LoginSession, User
from tests.accounts.conftest import login
from tests.accounts.test_recovery import mailed_token
from tests.admin.browser import Browser
from tests.collaborations.helpers import headers_of
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

REVOKED = {"msg": "Token has been revoked"}
NEW_PASSWORD = "Another1!pass"


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def user_login(api, username: str = "alice", password: str = PASSWORD) -> dict:
    response = login(api, username, password)
    assert response.status_code == 200, response.json()
    return response.json()


def node_login(api, api_key: str) -> dict:
    response = api.post("/api/token/node", {"api_key": api_key}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def refresh(api, token: str):
    return api.post("/api/token/refresh", **auth(token))


def assert_revoked(api, tokens: dict, me: str) -> None:
    """Neither the access token nor the refresh token of a login works any more."""
    for response in (api.get(me, **auth(tokens["access_token"])), refresh(api, tokens["refresh_token"])):
        assert response.status_code == 401
        assert response.json() == REVOKED


def assert_works(api, tokens: dict, me: str) -> None:
    assert api.get(me, **auth(tokens["access_token"])).status_code == 200


def audited(action: str) -> bool:
    return AuditEntry.objects.filter(action=action).exists()


# --- password change and reset ---------------------------------------------------------------------------
def test_a_password_change_ends_every_login(api, user):
    me = f"/api/user/{user.pk}"
    first, second = user_login(api), user_login(api)

    changed = api.patch(
        "/api/password/change",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
        **auth(first["access_token"]),
    )

    assert changed.status_code == 200
    assert_revoked(api, first, me)
    assert_revoked(api, second, me)
    assert not LoginSession.objects.filter(identity=user).exists()
    assert_works(api, user_login(api, password=NEW_PASSWORD), me)


def mailed(outbox: list) -> object:
    """The one e-mail sent, waiting for it a moment: it may leave after the answer."""
    for _ in range(100):
        if outbox:
            break
        time.sleep(0.05)
    assert len(outbox) == 1
    return outbox[0]


@pytest.mark.usefixtures("smtp")
def test_a_password_reset_ends_every_login(api, user, mailoutbox):
    me = f"/api/user/{user.pk}"
    stolen = user_login(api)
    assert api.post("/api/recover/lost", {"username": user.username}, format="json").status_code == 200

    response = api.post(
        "/api/recover/reset",
        {"reset_token": mailed_token(mailed(mailoutbox)), "password": NEW_PASSWORD},
        format="json",
    )

    assert response.status_code == 200
    assert_revoked(api, stolen, me)


def test_a_password_set_on_the_admin_site_ends_every_login(api, user):
    me = f"/api/user/{user.pk}"
    stolen = user_login(api)
    admin = Client()
    admin.force_login(make_user(user.organization, "Root"), backend="accounts.backends.RuleBackend")
    page = admin.get(f"/admin/accounts/user/{user.pk}/change/")
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(roles=[role.pk for role in user.roles.all()], new_password=NEW_PASSWORD, rules=[])

    response = admin.post(f"/admin/accounts/user/{user.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert_revoked(api, stolen, me)


def test_createroot_ends_the_logins_of_root(api, tmp_path):
    from accounts.services import root_user_ensure

    root = root_user_ensure(password=PASSWORD).user
    stolen = user_login(api, "root")
    password_file = tmp_path / "password"
    password_file.write_text(NEW_PASSWORD + "\n")
    call_command("createroot", "--password-file", str(password_file), stdout=io.StringIO())
    assert_revoked(api, stolen, f"/api/user/{root.pk}")


# --- a node's new API key ------------------------------------------------------------------------------
def _by_recover_endpoint(api, world, node) -> None:
    response = api.post(
        "/api/recover/node", {"id": node.pk}, format="json", **headers_of(world.org_a, "Organization Admin")
    )
    assert response.status_code == 200


def _by_command(api, world, node) -> None:
    call_command("node_key", str(node.pk), stdout=io.StringIO())


def _by_admin_site(api, world, node) -> None:
    admin = Client()
    admin.force_login(make_user(world.org_a, "Organization Admin"), backend="accounts.backends.RuleBackend")
    response = admin.post("/admin/nodes/node/", {"action": "reset_api_keys", "_selected_action": [node.pk]})
    assert response.status_code == 302


@pytest.mark.parametrize("reset", [_by_recover_endpoint, _by_command, _by_admin_site])
def test_a_new_api_key_ends_the_logins_of_the_leaked_one(api, world, reset):
    node = world.node_a
    me = f"/api/node/{node.pk}"
    thief = node_login(api, world.keys[node.pk])
    assert_works(api, thief, me)

    reset(api, world, node)

    assert_revoked(api, thief, me)
    assert api.post("/api/token/container", {"task_id": 1, "image": "x"}, format="json",
                    **auth(thief["access_token"])).status_code == 401  # fmt: skip
    assert audited("node.api_key_reset")


# --- refresh tokens are single-use ---------------------------------------------------------------------
def test_each_refresh_gives_a_new_refresh_token_and_the_chain_goes_on(api, user):
    me = f"/api/user/{user.pk}"
    tokens = user_login(api)
    for _ in range(4):
        response = refresh(api, tokens["refresh_token"])
        assert response.status_code == 200
        assert response.json()["refresh_token"] != tokens["refresh_token"]
        tokens = response.json()
        assert_works(api, tokens, me)
    assert LoginSession.objects.filter(identity=user).count() == 1


def test_reuse_of_a_refresh_token_ends_the_whole_login(api, user, monkeypatch):
    monkeypatch.setattr("accounts.sessions.REUSE_LEEWAY", timedelta(0))
    me = f"/api/user/{user.pk}"
    stolen = user_login(api)
    other = user_login(api)  # another login of the same user, e.g. the web UI
    owner = refresh(api, stolen["refresh_token"]).json()

    replay = refresh(api, stolen["refresh_token"])

    assert replay.status_code == 401
    assert replay.json() == REVOKED
    # Both holders lose the login: the owner logs in again, the thief cannot.
    assert_revoked(api, owner, me)
    assert LoginSession.objects.get(identity=user, revoked_at__isnull=False)
    assert audited("token.reuse_revoked")
    assert_works(api, other, me)
    assert refresh(api, other["refresh_token"]).status_code == 200


def test_two_refreshes_at_once_both_give_a_usable_token(api, user):
    """The official clients may refresh from two threads with the same refresh token."""
    me = f"/api/user/{user.pk}"
    tokens = user_login(api)
    first, second = refresh(api, tokens["refresh_token"]), refresh(api, tokens["refresh_token"])
    assert first.status_code == second.status_code == 200
    for kept in (first.json(), second.json()):
        assert_works(api, kept, me)
    assert refresh(api, second.json()["refresh_token"]).status_code == 200


# --- the longest a login lasts ---------------------------------------------------------------------------
def test_refreshing_cannot_keep_a_login_past_its_maximum_lifetime(api, user, settings):
    # The refresh token expires at the end rounded down to the second: more than 1 s left for the refresh.
    settings.SESSION_MAX_LIFETIME = timedelta(seconds=2)
    tokens = user_login(api)
    assert refresh(api, tokens["refresh_token"]).status_code == 200
    time.sleep(2.1)

    response = refresh(api, tokens["refresh_token"])
    assert response.status_code == 401
    assert api.get(f"/api/user/{user.pk}", **auth(tokens["access_token"])).status_code == 401
    assert user_login(api)  # a new login is needed, and works


def test_node_logins_are_not_capped(api, world, settings):
    settings.SESSION_MAX_LIFETIME = timedelta(seconds=1)
    tokens = node_login(api, world.keys[world.node_a.pk])
    time.sleep(1.5)
    assert refresh(api, tokens["refresh_token"]).status_code == 200


# --- logging out -----------------------------------------------------------------------------------------
def test_logout_ends_this_login_only(api, user):
    me = f"/api/user/{user.pk}"
    here, elsewhere = user_login(api), user_login(api)

    response = api.post("/api/token/revoke", **auth(here["access_token"]))

    assert response.status_code == 200
    assert_revoked(api, here, me)
    assert_works(api, elsewhere, me)
    assert audited("token.revoke")


def test_logout_everywhere_ends_every_login(api, user):
    me = f"/api/user/{user.pk}"
    here, elsewhere = user_login(api), user_login(api)

    response = api.post("/api/token/revoke", {"all": True}, format="json", **auth(here["access_token"]))

    assert response.status_code == 200
    assert_revoked(api, here, me)
    assert_revoked(api, elsewhere, me)
    assert audited("token.revoke_all")
    assert_works(api, user_login(api), me)


@pytest.mark.parametrize("flag", ["true", 1, "yes"])
def test_logout_everywhere_is_asked_with_a_boolean_only(api, user, flag):
    """A body's boolean is ``true`` or ``false`` (README deviations): else a 400 that ends no login."""
    me = f"/api/user/{user.pk}"
    here, elsewhere = user_login(api), user_login(api)

    response = api.post("/api/token/revoke", {"all": flag}, format="json", **auth(here["access_token"]))

    assert response.status_code == 400
    assert "all" in response.json()["errors"]
    assert_works(api, here, me)
    assert_works(api, elsewhere, me)
    assert not audited("token.revoke")
    assert not audited("token.revoke_all")


def test_logout_everywhere_ends_the_admin_sessions_too(api, world):
    """A stolen admin session cookie is one of "every login"."""
    make_user(world.org_a, "Organization Admin", username="admin-a")
    stolen, kept = Browser("admin-a"), Client()
    assert stolen.get("/admin/").status_code == 200
    token = user_login(api, "admin-a")["access_token"]
    response = api.post("/api/token/revoke", {"all": True}, format="json", **auth(token))
    assert response.status_code == 200
    page = stolen.get("/admin/")
    assert (page.status_code, page["Location"]) == (302, "/admin/login/?next=/admin/")
    assert "_auth_user_id" not in stolen.client.session
    # Ending one login (logging out of the API) leaves the admin session alone.
    again = Browser("admin-a")
    api.post("/api/token/revoke", {}, format="json", **auth(user_login(api, "admin-a")["access_token"]))
    assert again.get("/admin/").status_code == 200
    assert kept.get("/admin/").status_code == 302  # never logged in


def test_a_node_can_end_all_its_logins(api, world):
    me = f"/api/node/{world.node_a.pk}"
    first, second = (node_login(api, world.keys[world.node_a.pk]) for _ in range(2))
    assert (
        api.post("/api/token/revoke", {"all": True}, format="json", **auth(first["access_token"])).status_code
        == 200
    )
    assert_revoked(api, second, me)


@pytest.mark.parametrize("body", [{"all": "maybe"}, {"all": [1]}, [1]])
def test_logout_with_a_bad_body_is_a_400_and_ends_nothing(api, user, body):
    tokens = user_login(api)
    response = api.post("/api/token/revoke", body, format="json", **auth(tokens["access_token"]))
    assert response.status_code == 400
    assert_works(api, tokens, f"/api/user/{user.pk}")
    assert User.objects.get(pk=user.pk).token_generation == 0


def test_logout_needs_an_access_token(api, user):
    tokens = user_login(api)
    assert api.post("/api/token/revoke").status_code == 401
    response = api.post("/api/token/revoke", **auth(tokens["refresh_token"]))
    assert response.status_code == 422
    assert_works(api, tokens, f"/api/user/{user.pk}")


def test_a_token_without_login_claims_is_refused(api, user):
    """Tokens of vantage6 itself or of an earlier version name no login and no generation."""
    from accounts.tokens import AccessToken

    response = api.get(f"/api/user/{user.pk}", **auth(str(AccessToken(user.pk, "user"))))
    assert response.status_code == 401
    assert response.json() == REVOKED
