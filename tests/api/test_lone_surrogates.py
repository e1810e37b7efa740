"""A lone surrogate in a JSON body (a ``\\ud800`` escape, or a charset that decodes to one) is a 400 on
every write, whatever field carries it, and changes nothing. Before, a field without DRF's character
check (a password, a run's status) took it on to the password hasher, the database or the answer that
repeats it: a 500."""

from __future__ import annotations

import json

import pytest

from accounts.login import PURPOSE_PASSWORD, issue_reset_token
from accounts.models import User
from tasks.models import Run
from tests.factories import PASSWORD, bearer, make_run, make_task, make_user

pytestmark = pytest.mark.django_db

ESCAPED = "\\ud800"  # as JSON text: a lone high surrogate


def _send(api, method: str, path: str, text: str, headers: dict, charset: str = "utf-8"):
    api.raise_request_exception = False
    encoded = text.encode("latin-1" if charset == "unicode_escape" else charset)
    return api.generic(method, path, encoded, f"application/json; charset={charset}", **headers)


def _refused(response) -> None:
    assert response.status_code == 400, response.content
    assert "U+D800" in response.json()["errors"]["_schema"][0]


@pytest.mark.parametrize("charset", ["utf-8", "unicode_escape"])
def test_a_run_status_with_a_lone_surrogate_is_a_400(api, world, charset):
    run = make_run(make_task(world.collab_ab, world.org_a), world.org_a)
    # unicode_escape: the surrogate is in the decoded text itself, not behind a JSON escape.
    body = f'{{"status": "{ESCAPED}"}}'
    _refused(_send(api, "PATCH", f"/api/run/{run.pk}", body, bearer(world.node_a), charset))
    run.refresh_from_db()
    assert run.status == "pending"


def test_a_new_user_with_a_lone_surrogate_in_the_password_is_a_400(api, world):
    root = make_user(world.org_a, "Root")
    body = json.dumps({"username": "new", "email": "new@example.org", "password": "\ud800", "roles": []})
    _refused(_send(api, "POST", "/api/user", body, bearer(root)))
    assert not User.objects.filter(username="new").exists()


def test_a_password_change_or_reset_to_a_lone_surrogate_is_a_400(api, world):
    user = make_user(world.org_a)
    body = json.dumps({"current_password": PASSWORD, "new_password": "a\ud800"})
    _refused(_send(api, "PATCH", "/api/password/change", body, bearer(user)))
    token = issue_reset_token(user, PURPOSE_PASSWORD)
    body = json.dumps({"reset_token": token, "password": "a\ud800"})
    _refused(_send(api, "POST", "/api/recover/reset", body, {}))
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_a_lone_surrogate_in_a_key_is_a_400_and_a_pair_is_text(api, world):
    run = make_run(make_task(world.collab_ab, world.org_a), world.org_a)
    headers = bearer(world.node_a)
    _refused(_send(api, "PATCH", f"/api/run/{run.pk}", f'{{"{ESCAPED}": 1, "status": "active"}}', headers))
    assert Run.objects.get(pk=run.pk).status == "pending"
    paired = json.dumps({"status": "active", "log": "\U0001f600 \u00e9"})  # escaped as a surrogate pair
    response = _send(api, "PATCH", f"/api/run/{run.pk}", paired, headers)
    assert response.status_code == 200, response.content
    assert Run.objects.get(pk=run.pk).log == "\U0001f600 \u00e9"
