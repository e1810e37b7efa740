"""Answers that carry secrets to a request without a bearer token (a login's tokens, a node's, a new
two-factor secret) as a shared cache between client and server meets them: none may keep them."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD, make_org, make_user

pytestmark = pytest.mark.django_db


def test_a_login_answer_is_kept_by_no_cache(api, world):  # noqa: ARG001 - needs the database
    make_user(make_org("x"), "Researcher", username="someone")
    answer = api.post("/api/token/user", {"username": "someone", "password": PASSWORD}, format="json")
    assert answer.status_code == 200 and "access_token" in answer.json()
    assert answer["Cache-Control"] == "no-store, private"


def test_a_node_login_answer_is_kept_by_no_cache(api, world):
    answer = api.post("/api/token/node", {"api_key": world.keys[world.node_a.pk]}, format="json")
    assert answer.status_code == 200 and "access_token" in answer.json()
    assert answer["Cache-Control"] == "no-store, private"


def test_a_new_two_factor_secret_is_kept_by_no_cache(api, world, settings):  # noqa: ARG001
    settings.TWO_FACTOR_AUTH = True
    make_user(make_org("x"), "Researcher", username="someone")
    answer = api.post("/api/token/user", {"username": "someone", "password": PASSWORD}, format="json")
    assert answer.status_code == 200 and "otp_secret" in answer.json()
    assert answer["Cache-Control"] == "no-store, private"


def test_a_public_read_may_still_be_cached(api, db):  # noqa: ARG001 - needs the database
    answer = api.get("/api/version")
    assert answer.status_code == 200
    assert not answer.has_header("Cache-Control")
