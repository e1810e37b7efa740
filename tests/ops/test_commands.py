"""``createroot``, ``demo`` and ``node_key``: good and bad input, and the effect through the API; the README's
table of every command."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class

from accounts.models import AuditEntry, User
from collaborations.models import Collaboration, Organization
from nodes.models import Node
from tests.factories import make_collab, make_node, make_org, make_user

pytestmark = pytest.mark.django_db

# The options Django gives every command.
DJANGO_OPTIONS = {
    "--help", "--version", "--verbosity", "--settings", "--pythonpath", "--traceback", "--no-color",
    "--force-color", "--skip-checks",
}  # fmt: skip


def log_in(api, username: str, password: str) -> int:
    return api.post(
        "/api/token/user", {"username": username, "password": password}, format="json"
    ).status_code


def node_login(api, api_key: str) -> int:
    return api.post("/api/token/node", {"api_key": api_key}, format="json").status_code


# --- createroot -------------------------------------------------------------------------------------
def test_createroot_creates_root_from_a_password_file(manage, api, tmp_path):
    (tmp_path / "pw").write_text("Root-pass-1\n")

    outcome = manage("createroot", "--password-file", str(tmp_path / "pw"))

    assert outcome.code == 0, outcome.err
    assert "Created user 'root'" in outcome.out
    root = User.objects.get(username="root")
    assert list(root.roles.values_list("name", flat=True)) == ["Root"]
    assert log_in(api, "root", "Root-pass-1") == 200


def test_createroot_resets_the_password_and_lifts_a_lock_out(manage, api, settings):
    assert manage("createroot", "--password-file", "-", stdin="Root-pass-1\n").code == 0
    for _ in range(settings.PASSWORD_MAX_FAILED_ATTEMPTS):
        assert log_in(api, "root", "wrong") == 401
    assert log_in(api, "root", "Root-pass-1") == 401  # blocked now
    root = User.objects.get(username="root")
    root.roles.clear()

    outcome = manage("createroot", "--password-file", "-", stdin="Root-pass-2")

    assert outcome.code == 0, outcome.err
    assert "New password set for 'root'" in outcome.out
    assert log_in(api, "root", "Root-pass-1") == 401
    assert log_in(api, "root", "Root-pass-2") == 200
    assert list(root.roles.values_list("name", flat=True)) == ["Root"]
    assert User.objects.filter(username="root").count() == 1
    assert AuditEntry.objects.filter(actor_type="system", action="user.password_reset").exists()


def test_createroot_asks_twice_on_a_terminal(manage, api, monkeypatch):
    answers = iter(["Root-pass-3", "Root-pass-3"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(answers))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)

    assert manage("createroot").code == 0
    assert log_in(api, "root", "Root-pass-3") == 200


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["Root-pass-3", "Root-pass-4"], "the passwords do not match"),
        (["weak", "weak"], "password refused: Password must be between 8 and 128 characters long"),
        (["nouppercase-1", "nouppercase-1"], "Password must contain at least one uppercase letter"),
    ],
)
def test_createroot_refuses_on_a_terminal(manage, monkeypatch, answers, message):
    replies = iter(answers)
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(replies))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)

    outcome = manage("createroot")

    assert outcome.code == 1
    assert message in outcome.err
    assert not User.objects.filter(username="root").exists()


def test_createroot_refuses_without_terminal_or_readable_file(manage, tmp_path):
    no_tty = manage("createroot", stdin="")
    assert no_tty.code == 1
    assert "use --password-file" in no_tty.err
    missing = manage("createroot", "--password-file", str(tmp_path / "nope"))
    assert missing.code == 1
    assert "cannot read the password file" in missing.err
    empty = manage("createroot", "--password-file", "-", stdin="\n")
    assert empty.code == 1
    assert "password refused" in empty.err
    assert not User.objects.filter(username="root").exists()


# --- node_key ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("by", ["id", "name"])
def test_node_key_issues_a_new_key_and_the_old_one_stops_working(manage, api, by):
    org = make_org("N")
    node, old_key = make_node(org, make_collab(org), "the-node")

    outcome = manage("node_key", str(node.pk) if by == "id" else "the-node")

    assert outcome.code == 0, outcome.err
    new_key = outcome.out.strip().splitlines()[-1]
    assert new_key != old_key
    assert node_login(api, new_key) == 200
    assert node_login(api, old_key) == 401
    assert AuditEntry.objects.filter(
        actor_type="system", action="node.api_key_reset", object_id=node.pk
    ).exists()


@pytest.mark.parametrize("reference", ["999", "no-such-node", "99999999999999999999", " "])
def test_node_key_of_an_unknown_node(manage, reference):
    org = make_org("N")
    node, _ = make_node(org, make_collab(org), "the-node")
    before = Node.objects.get(pk=node.pk).api_key_hash

    outcome = manage("node_key", reference)

    assert outcome.code == 1
    assert "no node with id or name" in outcome.err
    assert Node.objects.get(pk=node.pk).api_key_hash == before


# --- demo -------------------------------------------------------------------------------------------
def demo(manage, *args: str) -> dict:
    outcome = manage("demo", "--json", *args)
    assert outcome.code == 0, outcome.err
    return json.loads(outcome.out)


def test_demo_creates_a_network_that_works(manage, api):
    created = demo(manage)

    assert created["exists"] is False
    collaboration = Collaboration.objects.get(pk=created["collaboration"]["id"])
    assert not collaboration.encrypted
    assert collaboration.organizations.count() == 3
    assert Node.objects.filter(collaboration=collaboration).count() == 3
    assert {node["organization_id"] for node in created["nodes"]} == set(
        collaboration.organizations.values_list("pk", flat=True)
    )
    for node in created["nodes"]:
        assert node_login(api, node["api_key"]) == 200
    assert log_in(api, created["username"], created["password"]) == 200
    researcher = User.objects.get(username=created["username"])
    assert list(researcher.roles.values_list("name", flat=True)) == ["Researcher"]


def test_demo_text_output_names_the_credentials(manage):
    outcome = manage("demo")

    assert outcome.code == 0, outcome.err
    password = User.objects.get(username="demo-researcher")
    assert "researcher:    demo-researcher / " in outcome.out
    for node in Node.objects.all():
        assert node.name in outcome.out
    assert password.check_password(outcome.out.split("demo-researcher / ")[1].split()[0])


def test_demo_twice_changes_nothing_and_reset_issues_new_credentials(manage, api):
    created = demo(manage)
    stamp = datetime.now()

    again = manage("demo")

    assert again.code == 0
    assert "exists already" in again.out
    assert Organization.objects.count() == 3 and Node.objects.count() == 3
    assert log_in(api, created["username"], created["password"]) == 200
    assert not AuditEntry.objects.filter(created_at__gt=stamp, action="node.api_key_reset").exists()

    reset = demo(manage, "--reset")

    assert reset["exists"] is True
    assert log_in(api, created["username"], created["password"]) == 401
    assert log_in(api, reset["username"], reset["password"]) == 200
    for old, new in zip(created["nodes"], reset["nodes"], strict=True):
        assert (old["name"], old["id"]) == (new["name"], new["id"])
        assert node_login(api, old["api_key"]) == 401
        assert node_login(api, new["api_key"]) == 200
    assert Organization.objects.count() == 3 and Node.objects.count() == 3


def test_demo_refuses_when_its_names_are_taken(manage):
    make_user(make_org("demo-organization-2"), username="demo-researcher")

    outcome = manage("demo")

    assert outcome.code == 1
    assert "the demo network was not created" in outcome.err
    assert "organization 'demo-organization-2', user 'demo-researcher' exist(s) already" in outcome.err
    assert not Collaboration.objects.exists()


# --- the README's table of commands -----------------------------------------------------------------
def test_the_readme_lists_each_command_of_the_server_with_its_options():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    section = readme.split("\n## Operating the server\n", 1)[1].split("\n#", 1)[0]
    rows = {
        line.split("`")[1].split()[0]: line
        for line in section.splitlines()
        if line.startswith("| `") and not line.startswith("| `command")
    }
    ours = {
        name
        for name, app in get_commands().items()
        if app in {"accounts", "collaborations", "nodes", "tasks"}
    }
    assert set(rows) == ours
    for name, row in rows.items():
        parser = load_command_class(get_commands()[name], name).create_parser("manage.py", name)
        options = {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option not in DJANGO_OPTIONS
        }
        assert set(re.findall(r"--[a-z][a-z-]*", row)) == options, name
