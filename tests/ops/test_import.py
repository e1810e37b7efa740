"""``manage.py import FILE``: the example fixture, a second run, updates, and refused fixtures."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from accounts.models import AuditEntry, User
from collaborations.models import Collaboration, Organization, Study
from nodes.models import Node

pytestmark = pytest.mark.django_db

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fixture.yaml"
KEY_LINE = re.compile(r"^\s+(.+?)\s+([0-9a-f-]{36})$", re.MULTILINE)


def write(tmp_path, data) -> str:
    path = tmp_path / "fixture.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Organization, Collaboration, User, Node, Study))


def test_example_fixture_loads_and_its_node_keys_log_in(manage, api):
    outcome = manage("import", str(EXAMPLE))

    assert outcome.code == 0, outcome.err
    assert "organizations: 3 created, 0 updated, 0 unchanged" in outcome.out
    assert "studies: 1 created" in outcome.out
    registry = Collaboration.objects.get(name="Cancer registry")
    assert not registry.encrypted
    assert set(registry.organizations.values_list("name", flat=True)) == {
        "Hospital North", "Hospital South", "Research Institute",
    }  # fmt: skip
    alice = User.objects.get(username="alice")
    assert alice.organization.name == "Research Institute"
    assert list(alice.roles.values_list("name", flat=True)) == ["Researcher"]
    assert set(Study.objects.get(name="Survival study").organizations.values_list("name", flat=True)) == {
        "Hospital North", "Hospital South",
    }  # fmt: skip
    keys = dict(KEY_LINE.findall(outcome.out))
    assert set(keys) == {"north-registry-node", "Hospital South - Cancer registry Node"}
    for api_key in keys.values():
        assert api.post("/api/token/node", {"api_key": api_key}, format="json").status_code == 200
    login = api.post("/api/token/user", {"username": "alice", "password": "Change-me-1"}, format="json")
    assert login.status_code == 200
    assert AuditEntry.objects.filter(actor_type="system", action="node.create").count() == 2


def test_a_second_run_changes_nothing_and_shows_no_key(manage):
    assert manage("import", str(EXAMPLE)).code == 0
    before = counts()

    again = manage("import", str(EXAMPLE))

    assert again.code == 0, again.err
    assert counts() == before
    assert not KEY_LINE.search(again.out)
    for section, n in (("organizations", 3), ("collaborations", 1), ("users", 2), ("nodes", 2)):
        assert f"{section}: 0 created, 0 updated, {n} unchanged" in again.out


def test_existing_entries_are_updated_and_memberships_only_added(manage, tmp_path):
    assert manage("import", str(EXAMPLE)).code == 0
    alice = User.objects.get(username="alice")
    alice.set_password("Own-choice-9")
    alice.save()
    key = base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n").decode()
    data = {
        "organizations": [{"name": "Hospital North", "domain": "new.example.org", "public_key": key},
                          {"name": "Clinic East"}],
        "collaborations": [{"name": "Cancer registry", "organizations": ["Clinic East"], "encrypted": True}],
        "users": [{"username": "alice", "organization": "Research Institute", "lastname": "Smit",
                   "roles": ["Organization Admin"], "password": "Another-1x"}],
        "nodes": [{"organization": "Hospital North", "collaboration": "Cancer registry", "name": "north"}],
    }  # fmt: skip

    outcome = manage("import", write(tmp_path, data))

    assert outcome.code == 0, outcome.err
    north = Organization.objects.get(name="Hospital North")
    assert (north.domain, north.public_key) == ("new.example.org", key)
    registry = Collaboration.objects.get(name="Cancer registry")
    assert registry.encrypted
    assert registry.organizations.count() == 4  # Clinic East added, nobody removed
    alice.refresh_from_db()
    assert alice.lastname == "Smit"
    assert set(alice.roles.values_list("name", flat=True)) == {"Researcher", "Organization Admin"}
    assert alice.check_password("Own-choice-9")  # an existing user keeps its password
    assert Node.objects.filter(name="north").exists()
    assert "users: 0 created, 1 updated" in outcome.out


ORG_A = "organizations: [{name: A}]\n"
BOB = "users: [{username: bob, organization: A, "
BAD_FIXTURES = [
    ("- just\n- a list\n", "the fixture must be a mapping"),
    ("organizations: {name: A}\n", "organizations: must be a list of entries"),
    ("ornagizations: []\n", "unknown section 'ornagizations'"),
    ("organizations: [[1, 2]]\n", "organizations[0]: must be a mapping of fields"),
    ("organizations: [{name: A, colour: red}]\n", "organizations[0] (A): colour: unknown field"),
    ("organizations: [{name: '123'}]\n", "organizations[0] (123): name: Name cannot be a number."),
    (
        "organizations: [{name: A, public_key: 'not base64!'}]\n",
        "organizations[0] (A): public_key: The public key must be base64",
    ),
    ("organizations: [{name: A}, {name: A}]\n", "organizations: 'A' appears 2 times"),
    (
        "collaborations: [{name: C, organizations: [Nowhere]}]\n",
        "collaborations[0] (C): organizations: unknown organization 'Nowhere'",
    ),
    (
        "collaborations: [{name: C, organizations: []}]\n",
        "collaborations[0] (C): organizations: This list may not be empty.",
    ),
    (
        ORG_A + "collaborations: [{name: C, organizations: [A], encrypted: maybe}]\n",
        "collaborations[0] (C): encrypted: Must be a valid boolean.",
    ),
    (
        ORG_A + BOB + "email: b@x.org, password: short}]\n",
        "users[0] (bob): password: Password must be between 8 and 128 characters long",
    ),
    (ORG_A + BOB + "password: Good-pass-1}]\n", "users[0] (bob): email: required for a new user"),
    (
        ORG_A + BOB + "email: b@x.org, password: Good-pass-1, roles: [Boss]}]\n",
        "users[0] (bob): roles: unknown role 'Boss'",
    ),
    (ORG_A + "nodes: [{organization: A}]\n", "nodes[0] (A): collaboration: This field is required."),
    (
        ORG_A + "nodes: [{organization: A, collaboration: Z}]\n",
        "nodes[0] (A in Z): collaboration: unknown collaboration 'Z'",
    ),
    (
        "studies: [{name: S, collaboration: C, organizations: [A]}]\n",
        "studies[0] (S): collaboration: unknown collaboration 'C'",
    ),
    ("organizations: [{name: A\n", "is not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FIXTURES)
def test_a_bad_fixture_is_refused_whole_with_the_entry_and_field_named(manage, tmp_path, text, message):
    before = counts()

    outcome = manage("import", write(tmp_path, text))

    assert outcome.code == 1
    assert "CommandError: nothing was imported" in outcome.err
    assert message in outcome.err
    assert counts() == before


def test_an_error_while_applying_rolls_everything_back(manage, tmp_path):
    # Valid entries, but the node's organization is no member of the collaboration: the service refuses.
    data = {
        "organizations": [{"name": "A"}, {"name": "B"}],
        "collaborations": [{"name": "C", "organizations": ["A"], "encrypted": False}],
        "nodes": [{"organization": "B", "collaboration": "C"}],
    }

    outcome = manage("import", write(tmp_path, data))

    assert outcome.code == 1
    assert "nodes[0] (B in C): Organization id=" in outcome.err
    assert "is not part of collaboration" in outcome.err
    assert counts() == (0, 0, 0, 0, 0)


def test_a_missing_file_and_a_missing_argument(manage, tmp_path):
    missing = manage("import", str(tmp_path / "nope.yaml"))
    assert missing.code == 1
    assert "cannot read" in missing.err and "nope.yaml" in missing.err

    assert manage("import").code == 2  # argparse: the file is required


def test_an_empty_fixture_imports_nothing(manage, tmp_path):
    outcome = manage("import", write(tmp_path, ""))
    assert outcome.code == 0
    assert counts() == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("command", ["import", "demo", "createroot", "node_key"])
def test_help(manage, command):
    outcome = manage(command, "--help")
    assert outcome.code == 0
    assert f"usage: manage.py {command}" in outcome.out
