"""A root that renamed itself keeps its e-mail address; the next start (``bootstrap``) creates a user
``root`` again, as vantage6 does, and must not fail on that address (the server would not start)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.catalogue import ROOT
from accounts.models import User
from accounts.services import root_user_ensure
from tests.factories import bearer

pytestmark = pytest.mark.django_db


def test_a_start_after_root_renamed_itself_creates_root_again(api, settings, monkeypatch):
    monkeypatch.setattr("accounts.management.commands.bootstrap.secure_data_files", list)
    monkeypatch.setattr("accounts.management.commands.bootstrap.deployment_warnings", list)
    settings.ROOT_PASSWORD = "Root-pass-1"
    renamed = root_user_ensure(password="Root-pass-1").user
    body = {"username": "site-root"}
    response = api.patch(f"/api/user/{renamed.pk}", body, format="json", **bearer(renamed))
    assert response.status_code == 200, response.content

    call_command("bootstrap", stdout=io.StringIO(), stderr=io.StringIO())

    root = User.objects.get(username="root")
    assert root.pk != renamed.pk
    assert root.roles.filter(name=ROOT, is_default_role=True).exists()
    assert User.objects.get(pk=renamed.pk).email == "root@domain.ext"  # the renamed account keeps its own
    assert root.email != "root@domain.ext"
