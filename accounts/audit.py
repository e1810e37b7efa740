"""The audit trail: one record per state-changing action, by whom, on what (every app writes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accounts.models import AuditAction, AuditEntry, Authenticatable
from vantage6.api.sql import Children, CompiledInsert, CompiledInsertIf, M, Statement


@dataclass(frozen=True)
class Actor:
    """Who acted, where no principal exists: a user or node logging in, or an anonymous caller."""

    kind: str
    id: int | None = None
    organization_id: int | None = None


ANONYMOUS = Actor("anonymous")


def actor_of(identity: Authenticatable) -> Actor:
    """A user or node as the actor of its own login."""
    return Actor(identity.type, identity.pk, getattr(identity, "organization_id", None))


# Every state-changing request writes one: its INSERT is written once, not built per call, and goes
# with the write's next statement or its commit (``CompiledInsert.later``).
_insert_audit_entry = CompiledInsert(
    AuditEntry,
    [
        "created_at",
        "actor_type",
        "actor_id",
        "actor_organization_id",
        "action",
        "object_type",
        "object_id",
        "object_organization_id",
        "data",
    ],
)


def audit(principal: Any, action: str, obj: Any = None, **data: object) -> None:
    """Record one state-changing action by ``principal`` (a ``Principal`` or an ``Actor``; None: the
    system itself). ``action`` is one of ``AuditAction`` (ValueError otherwise)."""
    _insert_audit_entry.later(**audit_entry(principal, action, obj, **data))


def audit_queried(
    principal: Any,
    action: str,
    obj: Any,
    organization_sql: Statement | None,
    actor_organization_sql: Statement | None,
) -> None:
    """``audit``'s record of a write that may have read neither its object nor its caller: their
    organizations, where given, as ``audit_if_changed`` takes them (scalar subqueries)."""
    _insert_audit_entry.later(
        _queried(organization_sql, actor_organization_sql), **audit_entry(principal, action, obj)
    )


def audit_if_changed(
    principal: Any,
    action: str,
    obj: Any = None,
    *,
    organization_sql: Statement | None = None,
    actor_organization_sql: Statement | None = None,
    **data: object,
) -> Statement:
    """``audit``'s record as one of the writes of ``CompiledUpdate.matching`` (``then``): written with
    the rows that statement changes, if any. ``organization_sql``: the object's organization as a
    scalar subquery (an object not read before the statement); ``actor_organization_sql``: the
    caller's (a caller not loaded)."""
    return _insert_audit_entry.if_changed(
        _queried(organization_sql, actor_organization_sql), **audit_entry(principal, action, obj, **data)
    )


def _queried(organization_sql: Statement | None, actor_organization_sql: Statement | None) -> dict | None:
    """The fields of an audit record given by scalar subqueries, by name; None without any."""
    queried = {
        name: sql
        for name, sql in (
            ("object_organization_id", organization_sql),
            ("actor_organization_id", actor_organization_sql),
        )
        if sql is not None
    }
    return queried or None


def audit_children(principal: Any, action: str) -> Children:
    """``audit``'s record of a new row as a child of ``CompiledInsert.with_children`` (the new row is
    its object)."""
    return _insert_audit_entry, "object_id", lambda obj: [audit_entry(principal, action, obj)]


def audit_entry(principal: Any, action: str, obj: Any = None, **data: object) -> dict:
    """The values of ``audit``'s record."""
    kind = getattr(principal, "kind", "system")
    return {
        "actor_type": kind,
        "actor_id": getattr(principal, "id", None)
        if kind != "container"
        else principal.claims.get("node_id"),
        "actor_organization_id": getattr(principal, "organization_id", None) if kind != "system" else None,
        "action": AuditAction(action),
        "object_type": type(obj).__name__.lower() if obj is not None else "",
        "object_id": getattr(obj, "pk", None),
        "object_organization_id": _organization_of(obj),
        "data": data,
    }


def audited_insert(
    insert: CompiledInsertIf[M],
    keys: dict[str, int],
    principal: Any,
    action: str,
    *,
    guard: Statement | None = None,
    actor_organization_sql: Statement | None = None,
    **values: object,
) -> M | None:
    """``insert(keys, **values)`` and ``audit``'s record of it, atomic (``CompiledInsertIf.with_entry``:
    on PostgreSQL one statement, one round trip). None when nothing was written.
    ``guard``: the caller's check, made by the statement (``CompiledInsertIf.with_entry``);
    ``actor_organization_sql``: the organization of a caller not loaded, as a scalar subquery."""
    queried = {"actor_organization_id": actor_organization_sql} if actor_organization_sql else None
    return insert.with_entry(
        keys,
        _insert_audit_entry,
        lambda row: audit_entry(principal, action, row),
        "object_id",
        guard=guard,
        queried=queried,
        **values,
    )


def _organization_of(obj: Any) -> int | None:
    """The organization an audited object belongs to, if any (as loaded: no query)."""
    if obj is None:
        return None
    if obj._meta.label == "collaborations.Organization":
        return obj.pk
    # A task belongs to the organization that created it.
    return getattr(obj, "organization_id", None) or getattr(obj, "init_org_id", None)
