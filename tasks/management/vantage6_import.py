"""Copying a vantage6 4.x server database into this server's database, ids kept.

First every row is read, mapped and checked (required values, lengths, uniqueness, references): that is
the whole of a dry run. Then it is written in one transaction, so a failure changes nothing. Rows whose
parent vantage6 had already deleted (it does not cascade) are left out and counted.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from django.core.management.color import no_style
from django.db import connection, models, transaction

from accounts.audit import audit
from accounts.catalogue import OPERATIONS, RULES, SCOPES, seed_rules_and_roles
from accounts.models import Authenticatable, AuthStatus, Role, Rule, User
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from nodes.models import Node, NodeConfig, api_key_digest
from tasks.management.vantage6_source import Source
from tasks.models import AlgorithmPort, Run, Task, TaskDatabase, task_status


class ImportRefused(Exception):
    """The source or the target does not allow the import; nothing was written."""


@dataclass
class Plan:
    """Everything to write, per model in writing order, and what was left out."""

    rows: dict[type[models.Model], list[models.Model]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)  # "<table>: <reason>" -> rows
    unknown_rules: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, model: type[models.Model], obj: models.Model) -> None:
        self.rows.setdefault(model, []).append(obj)

    def ids(self, model: type[models.Model]) -> set[int]:
        return {obj.pk for obj in self.rows.get(model, [])}


def target_contents() -> dict[str, int]:
    """What the target already holds of the things an import brings (only a target without any may
    receive one)."""
    counts = {
        "organizations": Organization.objects.count(),
        "users": User.objects.count(),
        "nodes": Node.objects.count(),
        "tasks": Task.objects.count(),
    }
    return {name: n for name, n in counts.items() if n}


def _checked(model: type[models.Model], table: str, obj: models.Model) -> models.Model:
    """``obj`` unless a value is missing, of the wrong kind or too long for this server: then the row
    is named. (SQLite keeps any value in any column.)"""
    for f in model._meta.concrete_fields:
        value = getattr(obj, f.attname)
        if value is None and not f.null and f.has_default():
            setattr(obj, f.attname, f.get_default())
        elif value is None and not f.null and not f.primary_key:
            raise ImportRefused(f"{table} {obj.pk}: {f.column} is empty, this server needs a value")
        if isinstance(f, models.IntegerField) and value is not None and type(value) is not int:
            raise ImportRefused(f"{table} {obj.pk}: {f.column} {value!r} is not a whole number")
        if isinstance(value, str) and f.max_length and len(value) > f.max_length:
            raise ImportRefused(f"{table} {obj.pk}: {f.column} is longer than {f.max_length} characters")
    return obj


def _unique_keys(model: type[models.Model]) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [
        (f.attname,) for f in model._meta.local_concrete_fields if f.unique and not f.primary_key
    ]
    keys += [
        tuple(cast(models.Field, model._meta.get_field(name)).attname for name in c.fields)
        for c in model._meta.constraints
        if isinstance(c, models.UniqueConstraint) and c.fields and c.condition is None
    ]
    return keys


def _require_unique(plan: Plan, model: type[models.Model], table: str) -> None:
    for key in _unique_keys(model):
        seen: dict[tuple, int] = {}
        for obj in plan.rows.get(model, []):
            value = tuple(getattr(obj, name) for name in key)
            if None in value:
                continue  # NULLs never collide
            if value in seen:
                raise ImportRefused(
                    f"{table} {obj.pk}: {', '.join(key)} {value if len(value) > 1 else value[0]!r} is "
                    f"also that of {table} {seen[value]}; this server needs it unique"
                )
            seen[value] = obj.pk


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _flag(value: object, default: bool) -> bool:
    return default if value is None else bool(value)


def catalogue_rules(in_database: bool) -> dict[tuple[str, str, str], int]:
    """This server's rules by (resource, scope, operation): their ids, or (before migration, in a dry
    run) the ids a fresh database gives them."""
    if in_database:
        return {(r.name, r.scope, r.operation): r.pk for r in Rule.objects.all()}
    return {(name, SCOPES[scope], OPERATIONS[op]): n for n, (name, scope, op, *_) in enumerate(RULES, 1)}


def build_plan(
    source: Source, ours: dict[tuple[str, str, str], int], progress: Callable[[str], None]
) -> Plan:
    """Read, map and check every row of ``source`` (``ours``: see catalogue_rules); ImportRefused
    names the first bad row."""
    plan = Plan()

    def each(table: str):
        total = source.count(table)
        for n, row in enumerate(source.rows(table), 1):
            if n % 5000 == 0:
                progress(f"  {table}: {n} of {total} read")
            yield row

    def put(model: type[models.Model], table: str, obj: models.Model) -> None:
        plan.add(model, _checked(model, table, obj))

    def skip(table: str, reason: str) -> None:
        plan.skipped[f"{table}: {reason}"] += 1

    for row in each("organization"):
        put(Organization, "organization", Organization(
            id=row["id"], name=row["name"], domain=_text(row["domain"]), address1=_text(row["address1"]),
            address2=row["address2"], zipcode=_text(row["zipcode"]), country=_text(row["country"]),
            public_key_bytes=row["_public_key"] or None,
        ))  # fmt: skip
    orgs = plan.ids(Organization)
    for row in each("collaboration"):
        put(Collaboration, "collaboration", Collaboration(
            id=row["id"], name=row["name"], encrypted=_flag(row["encrypted"], True)
        ))  # fmt: skip
    collabs = plan.ids(Collaboration)
    _links(plan, each("Member"), Collaboration.organizations.through, "Member",
           collaboration_id=collabs, organization_id=orgs)  # fmt: skip
    for row in each("study"):
        if row["collaboration_id"] not in collabs:
            skip("study", "its collaboration was deleted")
            continue
        put(Study, "study", Study(id=row["id"], name=row["name"], collaboration_id=row["collaboration_id"]))
    studies = plan.ids(Study)
    _links(plan, each("StudyMember"), Study.organizations.through, "StudyMember",
           study_id=studies, organization_id=orgs)  # fmt: skip
    for row in each("algorithmstore"):
        collab = row["collaboration_id"]
        if collab is not None and collab not in collabs:
            skip("algorithmstore", "its collaboration was deleted")
            continue
        # Who linked a store is not known; only a global administrator can make one available to all.
        put(AlgorithmStore, "algorithmstore", AlgorithmStore(
            id=row["id"], name=_text(row["name"]), url=_text(row["url"]), collaboration_id=collab,
            trusted=collab is None,
        ))  # fmt: skip
    stores = plan.ids(AlgorithmStore)

    # Rules are this server's catalogue: matched by resource, scope and operation.
    rules: dict[int, int] = {}
    for row in each("rule"):
        key = (row["name"], row["scope"], row["operation"])
        if key in ours:
            rules[row["id"]] = ours[key]
        else:
            plan.unknown_rules.add(key)
    for row in each("role"):
        org = row["organization_id"]
        if org is not None and org not in orgs:
            skip("role", "its organization was deleted")
            continue
        put(Role, "role", Role(
            id=row["id"], name=_text(row["name"]), description=_text(row["description"]),
            organization_id=org, is_default_role=_flag(row["is_default_role"], False),
        ))  # fmt: skip
    roles = plan.ids(Role)
    _links(plan, each("role_rule_association"), Role.rules.through, "role_rule_association",
           role_id=roles, rule_id=rules)  # fmt: skip

    identities = {row["id"]: row for row in each("authenticatable")}
    for row in each("user"):
        if row["organization_id"] not in orgs:
            skip("user", "its organization was deleted")
            continue
        put(User, "user", User(
            **_identity(identities, row["id"], "user"),
            username=row["username"], password=row["password"] or "", firstname=_text(row["firstname"]),
            lastname=_text(row["lastname"]), email=row["email"], organization_id=row["organization_id"],
            failed_login_attempts=row["failed_login_attempts"] or 0,
            last_login_attempt=row["last_login_attempt"], otp_secret=row["otp_secret"],
            last_email_failed_login_sent=row["last_email_failed_login_sent"],
            last_email_recover_password_sent=row["last_email_recover_password_sent"],
        ))  # fmt: skip
    users = plan.ids(User)
    _links(plan, each("Permission"), User.roles.through, "Permission", user_id=users, role_id=roles)
    _links(plan, each("UserPermission"), User.rules.through, "UserPermission", user_id=users, rule_id=rules)
    for row in each("node"):
        if row["organization_id"] not in orgs:
            skip("node", "its organization was deleted")
            continue
        collab = row["collaboration_id"] if row["collaboration_id"] in collabs else None
        # The bcrypt hash logs in as it is (see nodes.selectors); a node without one gets no usable key.
        key_hash = row["api_key"] or api_key_digest(str(uuid.uuid4()))
        put(Node, "node", Node(
            **_identity(identities, row["id"], "node"), name=row["name"], api_key_hash=key_hash,
            organization_id=row["organization_id"], collaboration_id=collab,
        ))  # fmt: skip
    nodes = plan.ids(Node)
    for row in each("nodeconfig"):
        if row["node_id"] not in nodes:
            skip("nodeconfig", "its node was deleted")
            continue
        put(NodeConfig, "nodeconfig", NodeConfig(
            id=row["id"], node_id=row["node_id"], key=_text(row["key"]), value=_text(row["value"])
        ))  # fmt: skip

    task_rows = list(each("task"))
    kept = {
        row["id"] for row in task_rows if row["collaboration_id"] in collabs and row["init_org_id"] in orgs
    }
    for row in task_rows:
        if row["id"] not in kept:
            skip("task", "its collaboration or organization was deleted")
            continue
        put(Task, "task", Task(
            id=row["id"], name=_text(row["name"]), description=_text(row["description"]),
            image=_text(row["image"]), collaboration_id=row["collaboration_id"],
            study_id=row["study_id"] if row["study_id"] in studies else None,
            job_id=row["job_id"] if row["job_id"] is not None else row["id"],
            parent_id=row["parent_id"] if row["parent_id"] in kept else None,
            init_org_id=row["init_org_id"],
            init_user_id=row["init_user_id"] if row["init_user_id"] in users else None,
            created_at=row["created_at"],
            algorithm_store_id=row["algorithm_store_id"] if row["algorithm_store_id"] in stores else None,
        ))  # fmt: skip
    for row in each("taskdatabase"):
        if row["task_id"] not in kept:
            skip("taskdatabase", "its task was deleted")
            continue
        put(TaskDatabase, "taskdatabase", TaskDatabase(
            id=row["id"], task_id=row["task_id"], database=_text(row["database"]),
            parameters=row["parameters"] or "{}",
        ))  # fmt: skip
    for row in each("run"):
        if row["task_id"] not in kept or row["organization_id"] not in orgs:
            skip("run", "its task or organization was deleted")
            continue
        put(Run, "run", Run(
            id=row["id"], task_id=row["task_id"], organization_id=row["organization_id"],
            input=row["input"], result=row["result"], assigned_at=row["assigned_at"],
            started_at=row["started_at"], finished_at=row["finished_at"], status=row["status"],
            log=row["log"], cleanup_at=row["cleanup_at"],
            blob_storage_used=_flag(row["blob_storage_used"], False),
        ))  # fmt: skip
    runs = plan.ids(Run)
    _set_task_status(plan)
    for row in each("algorithmport"):
        if row["run_id"] not in runs:
            skip("algorithmport", "its run was deleted")
            continue
        put(AlgorithmPort, "algorithmport", AlgorithmPort(
            id=row["id"], run_id=row["run_id"], port=row["port"], label=row["label"]
        ))  # fmt: skip

    for model, table in ((Organization, "organization"), (Collaboration, "collaboration"), (Study, "study"),
                         (User, "user"), (Node, "node")):  # fmt: skip
        _require_unique(plan, model, table)
    return plan


def _set_task_status(plan: Plan) -> None:
    """Each task's stored status and end, from its imported runs."""
    runs: dict[int, list[tuple[str, datetime | None]]] = {}
    for run in cast(list[Run], plan.rows.get(Run, [])):
        runs.setdefault(run.task_id, []).append((run.status, run.finished_at))
    for task in cast(list[Task], plan.rows.get(Task, [])):
        task.status, task.finished_at = task_status(runs.get(task.pk, []))


def _identity(identities: dict[int, dict], pk: int, kind: str) -> dict:
    """The authenticatable part of a user or node. Nobody is connected to this server yet: offline."""
    row = identities.get(pk) or {}
    status = row.get("status")
    return {
        "id": pk, "authenticatable_ptr_id": pk, "type": kind, "ip": row.get("ip"),
        "last_seen": row.get("last_seen"),
        "status": AuthStatus.OFFLINE if status == AuthStatus.ONLINE else status,
    }  # fmt: skip


def _links(plan: Plan, rows, through: type[models.Model], table: str, **columns: set | dict) -> None:
    """Association rows whose both ends were imported, once each (vantage6 allows duplicates); a
    dict maps source ids to ours."""
    seen = set()
    for row in rows:
        values = {}
        for column, known in columns.items():
            if row[column] not in known:
                break
            values[column] = known[row[column]] if isinstance(known, dict) else row[column]
        else:
            key = tuple(values.values())
            if key not in seen:
                seen.add(key)
                plan.add(through, through(**values))
            continue
        plan.skipped[f"{table}: one end is not imported"] += 1


@transaction.atomic
def write_plan(plan: Plan, progress: Callable[[str], None]) -> dict[str, int]:
    """Write ``plan`` into the (empty) target in one transaction; what was copied, per table."""
    if contents := target_contents():
        raise ImportRefused(not_empty_message(contents))
    # The built-in roles seeded on migration make way for the source's own, ids kept; seeding at the end
    # brings their rules to this server's definition again.
    Role.objects.all().delete()
    copied: dict[str, int] = {}
    for model, objs in plan.rows.items():
        name = model._meta.db_table
        if len(objs) > 5000:
            progress(f"  {name}: {len(objs)} rows")
        if model in (User, Node):
            # Multi-table children: the shared identity row first, then the user or node row itself.
            Authenticatable.objects.bulk_create(
                [Authenticatable(id=o.pk, type=o.type, ip=o.ip, last_seen=o.last_seen, status=o.status)
                 for o in cast(list[Authenticatable], objs)]
            )  # fmt: skip
            for obj in objs:
                obj.save_base(raw=True, force_insert=True)
        else:
            model._default_manager.bulk_create(objs, batch_size=500)
        copied[name] = len(objs)
    if connection.vendor == "postgresql":
        # New rows continue after the highest imported id.
        all_models = [m for m in plan.rows if m._meta.auto_created is False] + [Authenticatable]
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), all_models):
                cursor.execute(sql)
    seed_rules_and_roles()
    audit(None, "vantage6.import", None, copied=copied, skipped=dict(plan.skipped))
    return copied


def not_empty_message(contents: dict[str, int]) -> str:
    held = ", ".join(f"{n} {name}" for name, n in contents.items())
    return f"the target database already holds {held}: import into a new, empty database"
