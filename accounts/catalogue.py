"""The fixed rule catalogue (the 86 rules of vantage6 4.15, then this server's own), the built-in roles,
and their seeding."""

from __future__ import annotations

from django.db import transaction

# Scope and operation names as stored and emitted; codes as accepted in filters.
SCOPES = {"own": "OWN", "org": "ORGANIZATION", "col": "COLLABORATION", "glo": "GLOBAL"}
OPERATIONS = {"v": "VIEW", "e": "EDIT", "c": "CREATE", "d": "DELETE", "s": "SEND", "r": "RECEIVE"}
SCOPE_RANK = {"OWN": 0, "ORGANIZATION": 1, "COLLABORATION": 2, "GLOBAL": 3}

# (resource, scope code, operation code, description, in node role, in container role), in creation order.
RULES: list[tuple[str, str, str, str, bool, bool]] = [
    ("node", "glo", "v", "view any node", False, False),
    ("node", "col", "v", "view any node in your collaborations", False, False),
    ("node", "org", "v", "view your own node info", True, True),
    ("node", "glo", "e", "edit any node", False, False),
    ("node", "col", "e", "edit any node in your collaborations", False, False),
    ("node", "org", "e", "edit node that is part of your organization", True, False),
    ("node", "glo", "c", "create node for any organization", False, False),
    ("node", "col", "c", "create node for any organization in your collaborations", False, False),
    ("node", "org", "c", "create new node for your organization", False, False),
    ("node", "glo", "d", "delete any node", False, False),
    ("node", "col", "d", "delete any node in your collaborations", False, False),
    ("node", "org", "d", "delete node that is part of your organization", False, False),
    ("collaboration", "glo", "v", "view any collaboration", False, False),
    ("collaboration", "org", "v", "view collaborations of your organization", True, True),
    ("collaboration", "glo", "e", "edit any collaboration", False, False),
    (
        "collaboration",
        "col",
        "e",
        "edit any collaboration that your organization participates in",
        False,
        False,
    ),
    ("collaboration", "glo", "c", "create a new collaboration", False, False),
    ("collaboration", "glo", "d", "delete a collaboration", False, False),
    (
        "collaboration",
        "col",
        "d",
        "delete any collaboration that your organization participates in",
        False,
        False,
    ),
    ("organization", "glo", "v", "view any organization", False, False),
    ("organization", "org", "v", "view your own organization info", True, True),
    ("organization", "col", "v", "view collaborating organizations", True, True),
    ("organization", "glo", "e", "edit any organization", False, False),
    ("organization", "org", "e", "edit your own organization info", True, False),
    ("organization", "col", "e", "edit collaborating organizations", False, False),
    ("organization", "glo", "c", "create a new organization", False, False),
    ("organization", "glo", "d", "delete any organization", False, False),
    ("task", "glo", "v", "view any task", False, False),
    ("task", "col", "v", "view tasks of your collaborations", True, True),
    ("task", "org", "v", "view tasks that your organization initiated", False, False),
    ("task", "own", "v", "view tasks that you initiated", False, False),
    ("task", "glo", "c", "create a new task", False, False),
    (
        "task",
        "col",
        "c",
        "create a new task for collaborations in which your organization participates with",
        False,
        False,
    ),
    ("task", "glo", "d", "delete a task", False, False),
    ("task", "col", "d", "delete a task from your collaborations", False, False),
    (
        "task",
        "org",
        "d",
        "delete a task from a collaboration in which your organization participates with",
        False,
        False,
    ),
    ("task", "own", "d", "delete tasks that you created", False, False),
    ("run", "glo", "v", "view any run", False, False),
    ("run", "col", "v", "view runs of your organizations collaborations", True, True),
    ("run", "org", "v", "view any run of a task created by your organization", False, False),
    ("run", "own", "v", "view any run of a task created by you", False, False),
    ("user", "glo", "v", "View any user", False, False),
    ("user", "col", "v", "View users from your collaboration", False, False),
    ("user", "org", "v", "View users from your organization", False, False),
    ("user", "glo", "c", "Create a new user for any organization", False, False),
    ("user", "col", "c", "Create a new user for organizations in your collaborations", False, False),
    ("user", "org", "c", "Create a new user for your organization", False, False),
    ("user", "glo", "e", "Edit any user", False, False),
    ("user", "col", "e", "Edit any user in your collaborations", False, False),
    ("user", "org", "e", "Edit users from your organization", False, False),
    ("user", "own", "e", "Edit your own info", False, False),
    ("user", "glo", "d", "Delete any user", False, False),
    ("user", "col", "d", "Delete any user in your collaborations", False, False),
    ("user", "org", "d", "Delete users from your organization", False, False),
    ("user", "own", "d", "Delete your own account", False, False),
    ("role", "glo", "v", "View any role", False, False),
    ("role", "col", "v", "View any role in your collaborations", False, False),
    ("role", "org", "v", "View the roles of your organization", False, False),
    ("role", "glo", "c", "Create role for any organization", False, False),
    ("role", "col", "c", "Create role for any organization in your collaborations", False, False),
    ("role", "org", "c", "Create role for your organization", False, False),
    ("role", "glo", "e", "Edit any role", False, False),
    ("role", "col", "e", "Edit any role in your collaborations", False, False),
    ("role", "org", "e", "Edit a role from your organization", False, False),
    ("role", "glo", "d", "Delete a role from any organization", False, False),
    ("role", "col", "d", "Delete a role from any organization in your collaborations", False, False),
    ("role", "org", "d", "Delete a role from your organization", False, False),
    ("port", "glo", "v", "view any port", False, False),
    ("port", "org", "v", "view ports of your organizations collaborations", True, True),
    ("event", "org", "r", "view websocket events of your organization", False, False),
    ("event", "col", "r", "view websocket events of your collaborations", False, False),
    ("event", "glo", "r", "view websocket events", False, False),
    ("event", "org", "s", "send websocket events for your organization", False, False),
    ("event", "col", "s", "send websocket events for your collaborations", False, False),
    ("event", "glo", "s", "send websocket events to all collaborations", False, False),
    ("study", "glo", "v", "view any study", False, False),
    ("study", "org", "v", "view studies that your organization is involved in", True, True),
    ("study", "col", "v", "view studies within your collaborations", False, False),
    ("study", "glo", "e", "edit any study", False, False),
    ("study", "col", "e", "edit studies within your collaborations", False, False),
    ("study", "org", "e", "edit studies that your organization is involved in", False, False),
    ("study", "glo", "c", "create a new study", False, False),
    ("study", "col", "c", "create a new study within your collaborations", False, False),
    ("study", "glo", "d", "delete a study", False, False),
    ("study", "col", "d", "delete any study within your collaborations", False, False),
    ("study", "org", "d", "delete studies that your organization is involved in", False, False),
    # This server's own rules: after vantage6's, so that those keep their ids.
    ("audit", "glo", "v", "view the audit trail of the whole server", False, False),
    ("audit", "org", "v", "view the audit trail of your organization's users and objects", False, False),
]

ROOT, CONTAINER, NODE = "Root", "container", "node"
ROOT_USERNAME = "root"  # the user of role Root created on the first start, in organization "root"
VIEWER, RESEARCHER = "Viewer", "Researcher"
ORG_ADMIN, COL_ADMIN = "Organization Admin", "Collaboration Admin"
DEFAULT_ROLE_NAMES = (ROOT, CONTAINER, NODE, VIEWER, RESEARCHER, ORG_ADMIN, COL_ADMIN)

_VIEWER = [
    ("user", "own", "e"), ("user", "own", "d"), ("user", "org", "v"),
    ("organization", "org", "v"), ("organization", "col", "v"), ("collaboration", "org", "v"),
    ("role", "org", "v"), ("node", "org", "v"), ("node", "col", "v"), ("task", "col", "v"),
    ("run", "col", "v"), ("port", "org", "v"), ("event", "org", "r"), ("event", "col", "r"),
    ("study", "org", "v"),
]  # fmt: skip
_RESEARCHER = [*_VIEWER, ("task", "col", "c"), ("task", "org", "d")]
_ORG_ADMIN = [
    *_VIEWER,
    ("user", "org", "c"), ("user", "org", "e"), ("user", "org", "d"), ("organization", "org", "e"),
    ("role", "org", "c"), ("role", "org", "e"), ("role", "org", "d"), ("node", "org", "c"),
    ("node", "org", "e"), ("event", "org", "s"), ("audit", "org", "v"),
]  # fmt: skip
_COL_ADMIN = [
    *_ORG_ADMIN,
    ("task", "col", "c"), ("task", "org", "d"), ("node", "col", "c"), ("node", "col", "d"),
    ("collaboration", "col", "e"), ("organization", "glo", "v"), ("organization", "col", "e"),
    ("user", "col", "v"), ("user", "col", "c"), ("user", "col", "e"), ("role", "col", "v"),
    ("event", "col", "s"), ("study", "col", "v"), ("study", "col", "c"), ("study", "col", "e"),
    ("study", "col", "d"),
]  # fmt: skip

# Built-in roles whose rule set and description are reset to this definition at every seeding.
SYNCED_ROLES: dict[str, tuple[str, list[tuple[str, str, str]] | None]] = {
    ROOT: ("Super role", None),  # None: every rule
    VIEWER: ("Can manage their own account and view resources related to their organization", _VIEWER),
    RESEARCHER: (
        "Can perform tasks, manage their own account, and view resources related to their organization",
        _RESEARCHER,
    ),
    ORG_ADMIN: ("Can manage an organization including its users, roles, and nodes.", _ORG_ADMIN),
    COL_ADMIN: (
        "Can manage a collaboration including its organization and users. Also has permissions of an "
        "organization admin and researcher.",
        _COL_ADMIN,
    ),
}


@transaction.atomic
def seed_rules_and_roles() -> None:
    """Create missing rules and built-in roles and bring built-in rule sets up to date (idempotent)."""
    from accounts.models import Role, Rule

    existing = {(r.name, r.scope, r.operation): r for r in Rule.objects.all()}
    by_key: dict[tuple[str, str, str], Rule] = {}
    node_rules, container_rules = [], []
    for resource, scope, operation, description, in_node, in_container in RULES:
        key = (resource, SCOPES[scope], OPERATIONS[operation])
        rule = existing.get(key)
        if rule is None:
            rule = Rule.objects.create(name=resource, scope=key[1], operation=key[2], description=description)
        by_key[(resource, scope, operation)] = rule
        if in_node:
            node_rules.append(rule)
        if in_container:
            container_rules.append(rule)

    # Root first, then node and container (which only ever gain rules): the ids of a fresh install.
    if not Role.objects.filter(name=ROOT).exists():
        Role.objects.create(name=ROOT, description=SYNCED_ROLES[ROOT][0], is_default_role=True)
    for name, rules in ((CONTAINER, container_rules), (NODE, node_rules)):
        role, _ = Role.objects.get_or_create(
            name=name, is_default_role=True, organization=None, defaults={"description": f"{name} role"}
        )
        role.rules.add(*rules)

    all_rules = list(by_key.values())
    for name, (description, keys) in SYNCED_ROLES.items():
        rules = all_rules if keys is None else [by_key[key] for key in keys]
        role = Role.objects.filter(name=name).first()  # type: ignore[assignment]  # None: created below
        if role is None:
            role = Role.objects.create(name=name, description=description, is_default_role=True)
        elif not role.is_default_role:
            continue  # an organization's own role of that name is left alone
        elif role.description != description:
            role.description = description
            role.save(update_fields=["description"])
        current = set(role.rules.values_list("id", flat=True))
        wanted = {rule.id for rule in rules}
        if current != wanted:
            role.rules.set(rules)
