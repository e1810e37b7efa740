"""A network (organizations, collaborations, users, nodes, studies) loaded from a YAML fixture.

Entries are matched by name: an existing one is updated, never duplicated, so loading the same fixture
again changes nothing. Nothing is ever deleted: members, study members and roles are only added, and
an existing user keeps its password. Everything goes through the services, as the system principal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.db import transaction
from django.db.models import Model
from rest_framework import serializers

from accounts.audit import audit
from accounts.models import Role, User
from accounts.permissions import Principal, principal_for_system
from accounts.serializers import UserCreateInput, validate_password_policy
from accounts.services import user_create, user_update
from collaborations.models import Collaboration, Organization, Study
from collaborations.serializers import CollaborationCreateInput, OrganizationCreateInput, StudyCreateInput
from collaborations.services import (
    collaboration_create,
    collaboration_update,
    organization_create,
    organization_update,
    study_create,
    study_organization_add,
)
from nodes.models import Node
from nodes.services import node_create, node_update
from vantage6.api.errors import ApiError
from vantage6.management import FixtureError

SECTIONS = ("organizations", "collaborations", "users", "nodes", "studies")


def _names(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(max_length=128), **kwargs)


class OrganizationEntry(OrganizationCreateInput):
    pass


class CollaborationEntry(CollaborationCreateInput):
    organization_ids = None  # type: ignore[assignment]  # DRF leaves a field set to None out
    organizations = _names(allow_empty=False)
    encrypted = serializers.BooleanField(default=True)


class UserEntry(UserCreateInput):
    organization_id = None  # type: ignore[assignment]  # DRF leaves a field set to None out
    rules = None  # type: ignore[assignment]
    organization = serializers.CharField(max_length=128)
    roles = _names(required=False, default=list)
    # Both only needed for a new user: an existing one keeps its password.
    email = serializers.EmailField(max_length=256, required=False)
    password = serializers.CharField(
        required=False,
        trim_whitespace=False,
        validators=[validate_password_policy],  # type: ignore[list-item]
    )


class NodeEntry(serializers.Serializer):
    organization = serializers.CharField(max_length=128)
    collaboration = serializers.CharField(max_length=128)
    name = serializers.CharField(max_length=256, required=False)


class StudyEntry(StudyCreateInput):
    collaboration_id = None  # type: ignore[assignment]  # DRF leaves a field set to None out
    organization_ids = None  # type: ignore[assignment]
    collaboration = serializers.CharField(max_length=128)
    organizations = _names(allow_empty=False)


ENTRY_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "organizations": OrganizationEntry,
    "collaborations": CollaborationEntry,
    "users": UserEntry,
    "nodes": NodeEntry,
    "studies": StudyEntry,
}


def _label(section: str, index: int, entry: object) -> str:
    if isinstance(entry, dict):
        name = entry.get("username") if section == "users" else entry.get("name")
        if section == "nodes" and not name:
            name = " in ".join(str(entry[key]) for key in ("organization", "collaboration") if key in entry)
        if name:
            return f"{section}[{index}] ({name})"
    return f"{section}[{index}]"


def _messages(detail: object, path: str = "") -> list[str]:
    """DRF error details as ``field: message`` lines."""
    if isinstance(detail, dict):
        return [line for key, value in detail.items() for line in _messages(value, f"{path}{key}.")]
    if isinstance(detail, list) and detail and not isinstance(detail[0], str):
        return [line for i, value in enumerate(detail) for line in _messages(value, f"{path}{i}.")]
    items = detail if isinstance(detail, list) else [detail]
    where = path.rstrip(".").replace("non_field_errors", "").strip(".")
    return [f"{where}: {item}" if where else str(item) for item in items]


def read(path: Path) -> dict:
    """The fixture's data; a FixtureError when the file cannot be read or is not YAML."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise FixtureError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FixtureError([f"{path} is not valid YAML: {exc}"]) from None
    return {} if data is None else data


def validate(data: object) -> dict[str, list[dict]]:
    """The entries of each section, validated; every problem is reported at once."""
    if not isinstance(data, dict):
        raise FixtureError([f"the fixture must be a mapping with the sections {', '.join(SECTIONS)}"])
    problems = [
        f"unknown section '{key}' (known: {', '.join(SECTIONS)})" for key in data if key not in SECTIONS
    ]
    sections: dict[str, list[dict]] = {}
    for section in SECTIONS:
        entries = data.get(section) or []
        if not isinstance(entries, list):
            problems.append(f"{section}: must be a list of entries")
            continue
        sections[section] = []
        for index, entry in enumerate(entries):
            label = _label(section, index, entry)
            if not isinstance(entry, dict):
                problems.append(f"{label}: must be a mapping of fields")
                continue
            serializer = ENTRY_SERIALIZERS[section](data=entry)
            unknown = sorted(str(key) for key in entry if key not in serializer.fields)
            problems += [f"{label}: {key}: unknown field" for key in unknown]
            if serializer.is_valid():
                sections[section].append(dict(serializer.validated_data))
            else:
                problems += [f"{label}: {message}" for message in _messages(serializer.errors)]
    if not problems:
        problems = _check_references(sections)
    if problems:
        raise FixtureError(problems)
    return sections


def _check_references(sections: dict[str, list[dict]]) -> list[str]:
    """Names that are neither in the fixture nor in the database, and duplicates within the fixture."""
    problems = []
    key_of = {"users": "username", "nodes": None}
    for section, entries in sections.items():
        key = key_of.get(section, "name")
        if key:
            seen = Counter(entry[key] for entry in entries)
            problems += [f"{section}: '{name}' appears {n} times" for name, n in seen.items() if n > 1]

    def known(model: type[Model], section: str) -> set[str]:
        wanted = {entry["name"] for entry in sections[section]}
        return wanted | set(model._default_manager.values_list("name", flat=True))

    organizations = known(Organization, "organizations")
    collaborations = known(Collaboration, "collaborations")
    for section, entries in sections.items():
        for index, entry in enumerate(entries):
            label = _label(section, index, entry)
            for name in entry.get("organizations", []) if section != "organizations" else []:
                if name not in organizations:
                    problems.append(f"{label}: organizations: unknown organization '{name}'")
            if "organization" in entry and entry["organization"] not in organizations:
                problems.append(f"{label}: organization: unknown organization '{entry['organization']}'")
            if "collaboration" in entry and entry["collaboration"] not in collaborations:
                problems.append(f"{label}: collaboration: unknown collaboration '{entry['collaboration']}'")
    for index, entry in enumerate(sections["users"]):
        label = _label("users", index, entry)
        exists = User.objects.filter(username=entry["username"]).exists()
        problems += [
            f"{label}: {name}: required for a new user"
            for name in ("email", "password")
            if not exists and not entry.get(name)
        ]
        problems += [f"{label}: roles: {message}" for message in _unknown_roles(entry)]
    return problems


def _unknown_roles(entry: dict) -> list[str]:
    available = set(Role.objects.filter(is_default_role=True).values_list("name", flat=True)) | set(
        Role.objects.filter(organization__name=entry["organization"]).values_list("name", flat=True)
    )
    return [f"unknown role '{name}'" for name in entry["roles"] if name not in available]


@dataclass
class LoadReport:
    created: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)
    # (node name, API key) of each node created; the keys are stored hashed and never shown again.
    node_keys: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, section: str) -> str:
        return (
            f"{section}: {self.created[section]} created, {self.updated[section]} updated, "
            f"{self.unchanged[section]} unchanged"
        )


class _Loader:
    def __init__(self, sections: dict[str, list[dict]], progress: Callable[[str], None]) -> None:
        self.sections = sections
        self.progress = progress
        self.principal: Principal = principal_for_system()
        self.report = LoadReport()

    def run(self) -> LoadReport:
        for section in SECTIONS:
            entries = self.sections[section]
            if not entries:
                continue
            apply = getattr(self, f"_{section}")
            step = max(1, len(entries) // 10)
            for index, entry in enumerate(entries):
                try:
                    outcome = apply(entry)
                except ApiError as exc:
                    raise FixtureError([f"{_label(section, index, entry)}: {exc.msg}"]) from None
                getattr(self.report, outcome)[section] += 1
                if len(entries) > 20 and (index + 1) % step == 0 and index + 1 < len(entries):
                    self.progress(f"{section}: {index + 1}/{len(entries)}")
            self.progress(self.report.summary(section))
        return self.report

    def _org(self, name: str) -> Organization:
        return Organization.objects.get(name=name)

    def _collab(self, name: str) -> Collaboration:
        return Collaboration.objects.get(name=name)

    def _org_ids(self, names: list[str]) -> set[int]:
        return set(Organization.objects.filter(name__in=names).values_list("pk", flat=True))

    def _organizations(self, entry: dict) -> str:
        organization = Organization.objects.filter(name=entry["name"]).first()
        if organization is None:
            organization_create(principal=self.principal, data=dict(entry))
            return "created"
        outcome = "unchanged"
        public_key = entry.pop("public_key", None)
        if public_key is not None and bytes(organization.public_key_bytes or b"") != public_key:
            # The API lets only an organization's own members change its key; an import is the server.
            organization.public_key_bytes = public_key or None
            organization.save(update_fields=["public_key_bytes"])
            audit(self.principal, "organization.edit", organization, fields=["public_key"])
            outcome = "updated"
        changes = {key: value for key, value in entry.items() if getattr(organization, key) != value}
        if changes:
            organization_update(principal=self.principal, organization=organization, data=changes)
            outcome = "updated"
        return outcome

    def _collaborations(self, entry: dict) -> str:
        wanted = self._org_ids(entry["organizations"])
        collaboration = Collaboration.objects.filter(name=entry["name"]).first()
        if collaboration is None:
            collaboration_create(
                principal=self.principal,
                name=entry["name"],
                organization_ids=sorted(wanted),
                encrypted=entry["encrypted"],
            )
            return "created"
        current = set(collaboration.organizations.values_list("pk", flat=True))
        changes: dict = {}
        if not wanted <= current:
            changes["organization_ids"] = sorted(current | wanted)
        if collaboration.encrypted != entry["encrypted"]:
            changes["encrypted"] = entry["encrypted"]
        if not changes:
            return "unchanged"
        collaboration_update(principal=self.principal, collaboration=collaboration, data=changes)
        return "updated"

    def _users(self, entry: dict) -> str:
        organization = self._org(entry["organization"])
        roles = Role.objects.filter(name__in=entry["roles"]).filter(
            is_default_role=True
        ) | Role.objects.filter(name__in=entry["roles"], organization=organization)
        role_ids = set(roles.values_list("pk", flat=True))
        user = User.objects.filter(username=entry["username"]).first()
        if user is None:
            user_create(
                principal=self.principal,
                username=entry["username"],
                email=entry["email"],
                password=entry["password"],
                firstname=entry.get("firstname") or "",
                lastname=entry.get("lastname") or "",
                organization_id=organization.pk,
                role_ids=sorted(role_ids),
            )
            return "created"
        changes: dict = {}
        if user.organization_id != organization.pk:
            changes["organization_id"] = organization.pk
        for name in ("email", "firstname", "lastname"):
            if entry.get(name) is not None and getattr(user, name) != entry[name]:
                changes[name] = entry[name]
        current = set(user.roles.values_list("pk", flat=True))
        if not role_ids <= current:
            changes["roles"] = sorted(current | role_ids)
        if not changes:
            return "unchanged"
        user_update(principal=self.principal, user=user, data=changes)
        return "updated"

    def _nodes(self, entry: dict) -> str:
        organization, collaboration = self._org(entry["organization"]), self._collab(entry["collaboration"])
        node = Node.objects.filter(organization=organization, collaboration=collaboration).first()
        if node is None:
            node, api_key = node_create(
                principal=self.principal,
                collaboration_id=collaboration.pk,
                organization_id=organization.pk,
                name=entry.get("name"),
            )
            self.report.node_keys.append((node.name, api_key))
            return "created"
        if entry.get("name") and node.name != entry["name"]:
            node_update(principal=self.principal, node=node, data={"name": entry["name"]})
            return "updated"
        return "unchanged"

    def _studies(self, entry: dict) -> str:
        collaboration = self._collab(entry["collaboration"])
        members = self._org_ids(entry["organizations"])
        study = Study.objects.filter(name=entry["name"]).first()
        if study is None:
            study_create(
                principal=self.principal,
                name=entry["name"],
                collaboration_id=collaboration.pk,
                organization_ids=sorted(members),
            )
            return "created"
        if study.collaboration_id != collaboration.pk:
            raise ApiError(400, f"collaboration: the study exists in collaboration '{study.collaboration}'")
        missing = members - set(study.organizations.values_list("pk", flat=True))
        for organization_id in sorted(missing):
            study_organization_add(principal=self.principal, study=study, organization_id=organization_id)
        return "updated" if missing else "unchanged"


def load(data: object, *, progress: Callable[[str], None] = lambda _line: None) -> LoadReport:
    """Validate ``data`` (a parsed fixture) and apply it in one transaction; FixtureError otherwise."""
    sections = validate(data)
    with transaction.atomic():
        return _Loader(sections, progress).run()


def node_key_lines(keys: list[tuple[str, str]]) -> list[str]:
    """The API keys of new nodes, for a terminal; they are stored hashed and cannot be shown again."""
    if not keys:
        return []
    width = max(len(name) for name, _ in keys)
    return [
        "API keys of the new nodes (shown only this once; put each in its node's configuration):",
        *(f"  {name.ljust(width)}  {api_key}" for name, api_key in keys),
    ]
