"""A start (``bootstrap``) and ``createroot`` look the root user up once: the service that ensures root
reports whether it created it, so no caller asks beforehand."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.services import root_user_ensure

pytestmark = pytest.mark.django_db

PASSWORD = "Root-pass-1"


def _root_lookups(command: str, *args: str) -> int:
    """The statements of ``manage.py command`` that read the user table by username."""
    with CaptureQueriesContext(connection) as captured:
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
    return sum('"user"."username"' in query["sql"] for query in captured)


@pytest.fixture(autouse=True)
def quiet_start(monkeypatch):
    """``bootstrap`` without its checks of the data folder and deployment (not what is counted here)."""
    monkeypatch.setattr("accounts.management.commands.bootstrap.secure_data_files", list)
    monkeypatch.setattr("accounts.management.commands.bootstrap.deployment_warnings", list)


@pytest.mark.parametrize("root_exists", [False, True], ids=["first start", "next start"])
def test_a_start_looks_root_up_once(settings, root_exists):
    settings.ROOT_PASSWORD = PASSWORD
    if root_exists:
        root_user_ensure(password=PASSWORD)

    assert _root_lookups("bootstrap") == 1
    assert User.objects.filter(username="root").count() == 1


@pytest.mark.parametrize("root_exists", [False, True], ids=["created", "reset"])
def test_createroot_looks_root_up_once(tmp_path, root_exists):
    if root_exists:
        root_user_ensure(password="Old-pass-1")
    (tmp_path / "password").write_text(PASSWORD + "\n")

    assert _root_lookups("createroot", "--password-file", str(tmp_path / "password")) == 1
    assert User.objects.get(username="root").check_password(PASSWORD)
