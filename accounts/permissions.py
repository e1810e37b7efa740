"""The permission engine: who may do what, and which rows each principal may see.

Every scope question of the server is answered here, for REST endpoints, ``include=``, query
filters, the admin site and websocket rooms alike. A principal is a user, a node or an algorithm
container; its rules are loaded once per request.

Each resource has one ``Scope`` definition (``RESOURCE_SCOPES``); from it come the rows a list shows
(``visible``), the check of one row (``allows``, and ``get_for``: 404 missing, 401 out of reach; of an
edit, also of the fields it changes: ``fields_refusal``) and the check of a filter value such as
``?organization_id=`` (``reaches``, vantage6's ``ALLOW_ORG``, ``ALLOW_ORG_IN_COL`` and ``CAN_COL``; a
list filter that a ``Scope`` declares otherwise: ``filter_reaches``; the list narrowed by such a filter:
``filtered``), and the rows that rows of another resource show on request (``include=``:
``Scope.embeds``; ``shows_embedded`` for one row, ``visible(with_embedded=)`` for a list). ``max_scope``
and ``at_least`` are vantage6's helpers of the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.db import connection
from django.db.models import CharField, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast

from accounts.catalogue import NODE, OPERATIONS, SCOPE_RANK, SCOPES
from vantage6.api.errors import ApiError, not_found, unauthorized
from vantage6.api.sql import CompiledList, CompiledRows, PkLookup, Statement, by_pk, joined

if TYPE_CHECKING:
    from accounts.models import User

GLO, COL, ORG, OWN = "GLOBAL", "COLLABORATION", "ORGANIZATION", "OWN"
M = TypeVar("M", bound=Model)
_SCOPES_DESC = (GLO, COL, ORG, OWN)


def _op(operation: str) -> str:
    """Accept an operation code (``v``), name (``view``) or NAME (``VIEW``)."""
    return OPERATIONS.get(operation, operation.upper())


@dataclass
class Principal:
    """The caller of a request: a user, a node or an algorithm container."""

    kind: str  # "user", "node" or "container"
    organization_id: int
    # (resource, scope NAME, operation NAME) triples.
    rules: frozenset[tuple[str, str, str]]
    user: Any = None  # accounts.User
    node: Any = None  # nodes.Node
    claims: dict = field(default_factory=dict)  # the container token's identity
    task: Any = None  # tasks.Task: a container's task, read in part with its token's check

    # --- identity --------------------------------------------------------------------------------
    @property
    def id(self) -> int | None:
        """The authenticatable id of a user or node; None for containers."""
        if self.user is not None:
            return self.user.pk
        if self.node is not None:
            return self.node.pk
        return None

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_node(self) -> bool:
        return self.kind == "node"

    @property
    def is_container(self) -> bool:
        return self.kind == "container"

    # DRF and Django read these from ``request.user``.
    is_authenticated = True
    is_active = True

    @cached_property
    def collaboration_ids(self) -> frozenset[int]:
        """The "auth collaborations": those of the organization; for a container only its own, for a
        node only its own while its organization is a member (vantage6: every collaboration of the
        organization, so a node's key, stolen, read the tasks and results of collaborations it does
        not serve)."""
        if self.is_container:
            return frozenset([self.claims["collaboration_id"]])
        loaded = _loaded_ids(self.user or self.node, "collaboration_keys")
        if loaded is not None:
            return loaded
        rows = memberships().filter(organization_id=self.organization_id)
        if self.is_node:
            rows = rows.filter(collaboration_id=self.node.collaboration_id)
        return frozenset(rows.values_list("collaboration_id", flat=True))

    @cached_property
    def collaborating_organization_ids(self) -> frozenset[int]:
        """Organizations in any auth collaboration (the own one only through a shared collaboration)."""
        loaded = _loaded_ids(self.user or self.node, "partner_keys")  # None for containers
        if loaded is not None:
            return loaded
        return frozenset(
            memberships()
            .filter(collaboration_id__in=self.collaboration_ids)
            .values_list("organization_id", flat=True)
        )

    # --- the vantage6 helpers ----------------------------------------------------------------------
    def has(self, resource: str, scope: str, operation: str) -> bool:
        return (resource, SCOPES.get(scope, scope), _op(operation)) in self.rules

    def max_scope(self, resource: str, operation: str) -> str | None:
        """The broadest scope at which the principal holds (resource, operation), else None."""
        operation = _op(operation)
        for scope in _SCOPES_DESC:
            if (resource, scope, operation) in self.rules:
                return scope
        return None

    def at_least(self, scope: str, resource: str, operation: str) -> bool:
        best = self.max_scope(resource, operation)
        return best is not None and SCOPE_RANK[best] >= SCOPE_RANK[SCOPES.get(scope, scope)]

    def reaches(
        self,
        resource: str,
        operation: str,
        *,
        organization_id: int | None = None,
        collaboration_id: int | None = None,
        owner_id: int | None = None,
    ) -> bool:
        """Whether a row of ``resource`` in this organization and/or collaboration (owned by the user
        ``owner_id``) lies within a scope the principal holds for ``operation``: what a filter such as
        ``?organization_id=`` may name.

        Derived from the resource's ``Scope``: collaboration scope reaches the auth collaborations,
        or, given only an organization, the collaborating organizations and the own one; organization
        scope reaches the own organization (the own collaborations for a resource without an
        organization, such as a collaboration); own scope reaches what the calling user owns.
        """
        if self.reaches_every(resource, operation):
            return True
        rules = self.rule_resource(resource)
        operation = _op(operation)
        definition = RESOURCE_SCOPES.get(resource)
        if (
            owner_id is not None
            and self.is_user
            and owner_id == self.id
            and definition is not None
            and definition.own
            and (rules, OWN, operation) in self.rules
        ):
            return True
        if (rules, COL, operation) in self.rules and (
            collaboration_id in self.collaboration_ids
            if collaboration_id is not None
            else organization_id == self.organization_id
            or self._partner_reached(definition, operation, organization_id)
        ):
            return True
        if (rules, ORG, operation) not in self.rules:
            return False
        if organization_id is not None:
            return organization_id == self.organization_id
        # Only a resource that belongs to no organization (a collaboration) is reached through the
        # own collaborations; for any other (events included) organization scope needs the organization.
        return (
            definition is not None
            and not definition.organization
            and collaboration_id in self.collaboration_ids
        )

    def _partner_reached(self, definition: Scope | None, operation: str, organization_id: int | None) -> bool:
        """Whether collaboration scope reaches another organization (``reaches``): a collaborating one,
        for a write only one in no other collaboration where the resource is ``partner_writes_confined``."""
        if organization_id not in self.collaborating_organization_ids:
            return False
        confined = definition is not None and definition.partner_writes_confined and operation != "VIEW"
        return not (confined and self._beyond(organization_id))

    def names_collaboration(self, collaboration_id: int, resource: str, operation: str) -> bool:
        """Whether a request body may name the collaboration to ``operation`` on ``resource`` there: the
        principal views it or may do that there. Judged on its id (the database is asked only if its scope
        ever needs another column), so a write that reads the row first (``fetch_in_collaboration``) and
        one whose statement checks that it exists get one answer."""
        # Its other columns deferred, not defaults: a scope that ever reads one reads it from the database.
        row = collaborations().model.from_db(None, ["id"], [collaboration_id])
        viewed = self.allows("collaboration", row)
        return viewed or self.reaches(resource, operation, collaboration_id=collaboration_id)

    def reaches_every(self, resource: str, operation: str) -> bool:
        """Whether ``reaches`` holds for every organization and collaboration (a global rule): a
        write may then skip reading its row for the check."""
        return (self.rule_resource(resource), GLO, _op(operation)) in self.rules

    def filter_reaches(self, resource: str, name: str, value: int) -> bool:
        """Whether a list of ``resource`` may be filtered on ``name`` (``organization_id`` or
        ``collaboration_id``) equal to ``value``: as the resource's ``Scope.filters`` declares it for
        the principal's broadest view scope, else as ``reaches`` judges it."""
        declared = RESOURCE_SCOPES.get(resource, _NO_SCOPE).filters.get(name)
        if declared is None:
            return self.reaches(resource, "view", **{name: value})
        scope = self.max_scope(self.rule_resource(resource), "view")
        reach = declared.get(scope) if scope is not None else None
        if reach is None:
            return scope == GLO
        return reach(self, value)

    def filtered(
        self, rows: QuerySet[M], resource: str, filters: dict, name: str, lookup: str = ""
    ) -> QuerySet[M]:
        """``rows`` narrowed by the list filter ``name`` of ``filters``, when given, as ``lookup``
        (``name`` itself by default); the 401 where the principal may not filter on that value
        (``filter_reaches``)."""
        if (value := filters.get(name)) is None:
            return rows
        self.require(self.filter_reaches(resource, name, value))
        return rows.filter(**{lookup or name: value})

    def event_reach(self, operation: str = "receive") -> list[tuple[int, int | None]]:
        """Where the principal's broadest ``event`` scope for ``operation`` reaches (permissions.md
        §5.7), as (collaboration, organization) pairs: whole collaborations (organization None) at
        global scope, every one, and at collaboration scope, the auth collaborations; at organization
        scope the own organization's part of each auth collaboration."""
        scope = self.max_scope("event", operation)
        if scope == GLO:
            return [(cid, None) for cid in collaborations().order_by("id").values_list("id", flat=True)]
        if scope == COL:
            return [(cid, None) for cid in sorted(self.collaboration_ids)]
        if scope == ORG:
            return [(cid, self.organization_id) for cid in sorted(self.collaboration_ids)]
        return []

    @staticmethod
    def rule_resource(resource: str) -> str:
        """The resource whose rules judge ``resource`` (itself unless its ``Scope`` names another)."""
        return RESOURCE_SCOPES.get(resource, _NO_SCOPE).rule_resource or resource

    def require_allows(self, resource: str, row: Any, operation: str) -> None:
        """``allows``, else the 401; it says so where only the other collaborations of the row's
        organization stand in the way (``Scope.partner_writes_confined``)."""
        if not self.allows(resource, row, operation):
            lookup = RESOURCE_SCOPES[resource].organization[0]
            raise self._refusal(resource, operation, getattr(row, lookup))

    def require_reaches(self, resource: str, operation: str, *, organization_id: int) -> None:
        """``reaches`` for a row of the organization, else the 401 (as ``require_allows``)."""
        if not self.reaches(resource, operation, organization_id=organization_id):
            raise self._refusal(resource, operation, organization_id)

    def _refusal(self, resource: str, operation: str, organization_id: int) -> ApiError:
        if (
            RESOURCE_SCOPES[resource].partner_writes_confined
            and self.max_scope(resource, operation) == COL
            and organization_id in self.collaborating_organization_ids
        ):
            return unauthorized(
                f"Organization id={organization_id} is also in collaborations you are not in: only the "
                f"global rule ({resource}, global, {_op(operation).lower()}) reaches it"
            )
        return unauthorized()

    def fields_refusal(
        self, resource: str, operation: str, fields: Collection[str] | None, row: Any = None
    ) -> str | None:
        """Why an edit of ``row`` of ``resource`` may not change ``fields`` (None: not told, so any field),
        or None: a node changes only the fields its ``Scope.node_writes_fields`` names, and only the row's
        own organization the ``Scope.own_organization_fields``."""
        if _op(operation) != "EDIT":
            return None
        definition = RESOURCE_SCOPES.get(resource, _NO_SCOPE)
        writable = definition.node_writes_fields
        if self.is_node and writable is not None:
            only = f"A node may only change the fields {', '.join(sorted(writable))} of a {resource}"
            if fields is None:
                return only
            if refused := sorted(set(fields) - writable):
                return f"{only}, not {', '.join(refused)}"
        owned = sorted(set(fields or ()) & definition.own_organization_fields)
        if owned and getattr(row, definition.organization[0]) != self.organization_id:
            names = " and ".join(name.replace("_", " ") for name in owned)
            return f"You can only change the {names} of your own organization!"
        return None

    def require(self, allowed: bool, msg: str | None = None) -> None:
        """Raise the vantage6 401 unless ``allowed``."""
        if not allowed:
            raise unauthorized(msg) if msg else unauthorized()

    def may_add_members(self) -> bool:
        """Whether the caller may add an organization to a collaboration. A new member falls within
        the collaboration-scope rules of every member's users, who could then create users in it with
        their own roles and see what it does in its other collaborations: only global editors may."""
        return self.has("collaboration", GLO, "edit")

    def _first_missing(self, rules: Iterable[tuple[str, str, str]]) -> str | None:
        """The first (resource, scope, operation) not held at that scope or broader, as the 401 names it."""
        for resource, scope, operation in rules:
            if not self.at_least(scope, resource, operation):
                return f"({resource}, {SCOPES.get(scope, scope).lower()}, {_op(operation).lower()})"
        return None

    def holds(self, rules: Iterable[tuple[str, str, str]]) -> bool:
        return self._first_missing(rules) is None

    def require_holds(
        self, rules: Iterable[tuple[str, str, str]], organization_id: int | None = None
    ) -> None:
        """Hold what you grant: each (resource, scope, operation) needs that operation at that scope or
        broader; otherwise the 401 names the first rule that is missing.

        Granted to the users of another organization (``organization_id``), a rule of organization or
        collaboration scope reaches into that organization's collaborations: unless the caller holds it
        globally, they must all be the caller's (else a Collaboration Admin could give a partner's user
        the run of collaborations the admin is not in).
        """
        rules = list(rules)
        if missing := self._first_missing(rules):
            raise unauthorized(f"You don't have the rule {missing}")
        if reaching := self._first_reaching_beyond(rules, organization_id):
            raise unauthorized(
                f"Organization id={organization_id} is in collaborations you are not in: you cannot "
                f"give its users the rule {reaching}"
            )

    def _first_reaching_beyond(
        self, rules: Iterable[tuple[str, str, str]], organization_id: int | None
    ) -> str | None:
        """The first rule of organization or collaboration scope that, held by a user of
        ``organization_id``, reaches into a collaboration the caller is not in (and does not hold
        globally), as the 401 names it."""
        if organization_id is None or organization_id == self.organization_id:
            return None
        reaching = [(r, s, o) for r, s, o in rules if s in (ORG, COL) and not self.has(r, GLO, o)]
        if not reaching or not self._beyond(organization_id):
            return None
        resource, scope, operation = reaching[0]
        return f"({resource}, {scope.lower()}, {_op(operation).lower()})"

    def _beyond(self, organization_id: int) -> bool:
        """Whether the organization is in a collaboration that the caller's organization is not in."""
        theirs = (
            memberships().filter(organization_id=organization_id).values_list("collaboration_id", flat=True)
        )
        return not set(theirs) <= self.collaboration_ids

    def _target_problem(self, user) -> str | None:
        """Why the caller may not target ``user`` (see ``require_holds_target``), or None."""
        if user.pk == self.id:
            return None
        rules = sorted(rules_of_user(user.pk))
        if missing := self._first_missing(rules):
            return f"User id={user.pk} holds the rule {missing} that you don't have"
        if reaching := self._first_reaching_beyond(rules, user.organization_id):
            return f"User id={user.pk} holds the rule {reaching} in collaborations you are not in"
        return None

    def holds_target(self, user: User) -> bool:
        """Hold what you target: see ``require_holds_target`` (always true for oneself)."""
        return self._target_problem(user) is None

    def require_holds_target(self, user: User) -> None:
        """Changing another user's credentials, e-mail, organization, roles or rules, or deleting that
        user, needs every rule the user holds (the AT_LEAST comparison of ``require_holds``), so
        nobody takes over an account that can do more than they can; and, as for granting them, where
        the user's rules reach into collaborations the caller is not in, needs them globally."""
        if problem := self._target_problem(user):
            raise unauthorized(problem)

    def require_edits_holders(self, role: Any) -> None:
        """Changing a role's rules changes them for everyone holding it: each other holder must be a
        user whose roles the caller could change directly (may edit the user, and
        ``require_holds_target``), or a role editor would take rights from, or give them to, users
        beyond its reach (a partner's users, a colleague holding more than the editor). The rules of
        the holders of one organization are judged together, in a query or two however many they are."""
        from accounts.models import Role, Rule, User

        holders = User.objects.filter(roles=role)
        if self.id is not None:
            holders = holders.exclude(pk=self.id)
        editable = self.visible_or_none("user", holders, "edit").values("pk")
        # The holder is not named: the editor may not view every user it cannot edit.
        if holders.exclude(pk__in=editable).exists():
            raise unauthorized(f"Role id={role.pk} is held by users you may not edit")
        for organization_id in set(holders.values_list("organization_id", flat=True)):
            theirs = holders.filter(organization_id=organization_id)
            via_roles = Role.rules.through.objects.filter(role__users__in=theirs).values("rule_id")
            direct = User.rules.through.objects.filter(user__in=theirs).values("rule_id")
            rules = sorted(
                Rule.objects.filter(Q(id__in=via_roles) | Q(id__in=direct)).values_list(
                    "name", "scope", "operation"
                )
            )
            if missing := self._first_missing(rules):
                raise unauthorized(
                    f"Role id={role.pk} is held by a user with the rule {missing} that you don't have"
                )
            if reaching := self._first_reaching_beyond(rules, organization_id):
                raise unauthorized(
                    f"Role id={role.pk} is held by a user with the rule {reaching} in collaborations you "
                    "are not in"
                )

    @cached_property
    def role_ids(self) -> frozenset[int]:
        """The ids of the user's own roles (empty for nodes and containers)."""
        if not self.is_user:
            return frozenset()
        from accounts.models import Role

        return frozenset(Role.objects.filter(users=self.id).values_list("id", flat=True))

    # --- row-level visibility ------------------------------------------------------------------------
    def scope_condition(self, resource: str, operation: str = "view") -> Q | None:
        """The rows of ``resource`` the principal's broadest scope allows, as a condition on its model
        (``EVERYTHING``, ``NOTHING`` or a ``Q``); None without any rule. The list filters and the
        object checks both come from here, so they cannot disagree."""
        definition = RESOURCE_SCOPES[resource]
        operation = _op(operation)
        scope = self.max_scope(self.rule_resource(resource), operation)
        if scope is None:
            fallback = definition.without_rule.get(operation)
            return fallback(self) if fallback is not None else None
        if operation != "VIEW" and self.is_node and definition.node_writes_own_row:
            return Q(pk=self.node.pk)  # within every scope of a node's rules
        if self.is_container and definition.container_job is not None:
            job = Q(**{definition.container_job: self.task.job_id})
            return job if scope == GLO else definition.condition(scope, self) & job
        condition = EVERYTHING if scope == GLO else definition.condition(scope, self)
        if self.is_node and definition.collaboration is not None and condition is not NOTHING:
            # ``Scope.collaboration``: its own collaboration alone, whatever its rule's scope reaches.
            condition &= Q(**{definition.collaboration: self.node.collaboration_id})
        if condition is EVERYTHING:
            return condition
        if operation == "VIEW" and definition.also_viewable is not None:
            condition |= definition.also_viewable(self)
        elif operation != "VIEW" and scope == COL and definition.partner_writes_confined:
            condition &= self._organizations_within_own_collaborations(definition.organization)
        return condition

    def _organizations_within_own_collaborations(self, lookups: tuple[str, ...]) -> Q:
        """The rows of organizations that are in no collaboration the principal's organization is not in
        (``lookups``: to the row's organization), as ``_beyond`` judges one."""
        elsewhere = memberships().exclude(collaboration_id__in=self.collaboration_ids)
        elsewhere = elsewhere.values("organization_id")
        return ~_any(Q(**{f"{lookup}__in": elsewhere}) for lookup in lookups)

    def visible(
        self,
        resource: str,
        queryset: QuerySet | CompiledList,
        operation: str = "view",
        *,
        with_embedded: str | None = None,
    ) -> QuerySet:
        """``queryset`` narrowed to what the principal's broadest scope allows; 401 without any rule.
        For a ``CompiledList`` (a list page's rows), the same rows by SQL compiled once per shape of
        the condition: a ``Narrowed``, which stands in for the queryset.

        ``with_embedded``: the rows will show their rows of that resource (``include=``). Then a 401
        unless the principal's view of it reaches the embedded rows of every row its view scope of
        ``resource`` shows (``Embedded.reach_of``), and only the rows whose embedded rows it reaches
        (``shows_embedded``): scopes do not nest once an organization has left a collaboration (its
        runs and tasks there stay its own, but are no longer in its collaborations)."""
        condition = self.scope_condition(resource, operation)
        if condition is None:
            raise unauthorized()
        if with_embedded is not None:
            condition = self._with_embedded(resource, with_embedded, condition)
        distinct = RESOURCE_SCOPES[resource].repeats_rows and condition is not EVERYTHING
        if isinstance(queryset, CompiledList):
            if condition is NOTHING:
                return queryset.queryset().none()
            return cast(QuerySet, queryset.narrowed(condition, distinct))
        if condition is EVERYTHING:
            return queryset
        if condition is NOTHING:
            return queryset.none()
        narrowed = queryset.filter(condition)
        return narrowed.distinct() if distinct else narrowed

    def _with_embedded(self, parent: str, embedded: str, condition: Q) -> Q:
        """``condition`` (the principal's view of ``parent``) narrowed to the rows whose rows of
        ``embedded`` may be shown (see ``visible``)."""
        embedding = RESOURCE_SCOPES[parent].embeds[embedded]
        scope = self.max_scope(self.rule_resource(parent), "view")
        reach = embedding.reach_of(scope) if scope is not None else GLO
        self.require(self.at_least(reach, self.rule_resource(embedded), "view"))
        shown = self._embedded_condition(parent, embedded)
        if shown is NOTHING or condition is NOTHING:
            return NOTHING
        if shown is EVERYTHING or shown == condition:  # the same SQL as without them
            return condition
        return shown if condition is EVERYTHING else condition & shown

    def shows_embedded(self, parent: str, embedded: str, row: Any) -> bool:
        """Whether the rows of ``embedded`` that ``row`` (of ``parent``) shows on request (``include=``)
        are within the principal's view of them (``Scope.embeds`` of ``parent``): a caller learns
        through a row nothing that the embedded rows' own endpoints refuse it."""
        condition = self._embedded_condition(parent, embedded)
        return condition is not NOTHING and (condition is EVERYTHING or _meets(condition, row))

    def _embedded_condition(self, parent: str, embedded: str) -> Q:
        """The rows of ``parent`` whose rows of ``embedded`` are within the principal's view of them."""
        embedding = RESOURCE_SCOPES[parent].embeds[embedded]
        if embedding.single:  # that one row as its own endpoint judges it
            condition = self.scope_condition(embedded)
            if condition is None:
                return NOTHING
            if condition is NOTHING or condition is EVERYTHING:
                return condition
            return _prefixed(condition, f"{embedding.single}__")
        held = self.max_scope(self.rule_resource(embedded), "view")
        covered = embedding.covered_by(held) if held is not None else None
        if covered is None:
            return NOTHING
        return EVERYTHING if covered == GLO else RESOURCE_SCOPES[parent].condition(covered, self)

    def allows(
        self, resource: str, obj: Any, operation: str = "view", *, fields: Collection[str] | None = None
    ) -> bool:
        """Whether ``obj`` is one of the rows ``visible`` gives: evaluated on the loaded row where the
        condition allows it, otherwise asked of the database. An edit changes ``fields`` (None: any),
        which ``fields_refusal`` judges."""
        if self.fields_refusal(resource, operation, fields, obj) is not None:
            return False
        condition = self.scope_condition(resource, operation)
        if condition is None or condition is NOTHING:
            return False
        return condition is EVERYTHING or _meets(condition, obj)

    def reads_blob(self, uploader_organization_id: int | None, named: bool, named_in_view: bool) -> bool:
        """Whether the principal may read a blob of the large result store: download it, or name it as
        a run's input or result (which shows it to whoever views that run, and keeps it from deletion).
        Who may view a run that names it (``task_runs`` of its task: ``named_in_view``) may; while no run
        names it (``named``), its uploader's organization (``None``: no such blob), which names its
        upload in a task or result. Knowing a name is not enough: it shows in every run that names it,
        to all who view that run."""
        if named:
            return named_in_view
        return uploader_organization_id is not None and uploader_organization_id == self.organization_id

    def get(
        self,
        queryset: QuerySet[M],
        pk: int | str,
        operation: str = "view",
        *,
        missing: str | ApiError,
        resource: str | None = None,
    ) -> M:
        """``get_for`` this principal, for callers that hold only the principal (the admin pages)."""
        return get_for(self, queryset, pk, operation, missing=missing, resource=resource)

    def visible_or_none(self, resource: str, queryset: QuerySet, operation: str = "view") -> QuerySet:
        """As ``visible`` but an empty queryset instead of a 401 (for ``include=`` and socket rooms)."""
        if self.max_scope(self.rule_resource(resource), operation) is None:
            return queryset.none()
        return self.visible(resource, queryset, operation)


EVERYTHING, NOTHING = Q(), Q(pk__in=[])


def _matches(condition: Q, obj: Any) -> bool | None:
    """``condition`` evaluated on a loaded row; None when it needs the database."""
    results = []
    for child in condition.children:
        result = _matches(child, obj) if isinstance(child, Q) else _lookup_matches(obj, *cast(tuple, child))
        if result is None:
            return None
        results.append(result)
    combined = all(results) if condition.connector == Q.AND else any(results)
    return not combined if condition.negated else combined


_PLAIN = (int, str, bool, type(None))


def _lookup_matches(obj: Any, lookup: str, value: object) -> bool | None:
    """One ``field[__fk…][__in|__isnull|__exact]`` lookup on ``obj``, following foreign keys only."""
    from django.core.exceptions import FieldDoesNotExist

    *path, operator = lookup.split("__")
    if operator not in ("in", "isnull", "exact"):
        path, operator = [*path, operator], "exact"
    target: Any = obj
    for position, name in enumerate(path):
        if not hasattr(target, "_meta"):
            return None  # a lookup into a value (``name__icontains`` …)
        if name == "pk":
            target = target.pk
            continue
        try:
            field = target._meta.get_field(name)
        except FieldDoesNotExist:
            return None
        if not field.concrete or field.many_to_many:
            return None
        last = position == len(path) - 1
        target = getattr(target, field.attname if last or not field.is_relation else name)
        if target is None:
            break
    if operator == "in":
        return target in value if isinstance(value, (set, frozenset, list, tuple)) else None
    if operator == "isnull":
        return (target is None) == value
    return target == value if isinstance(value, _PLAIN) else None


@dataclass(frozen=True)
class Scope:
    """Where a resource's rows stand: the lookups (relative to its model) of the organization it
    belongs to, the collaboration it lives in and the user who owns it. The row filter of every scope
    and the object check (``Principal.allows``) are both derived from it, so a new resource is one
    definition here.

    - global scope: every row;
    - collaboration scope: rows in an auth collaboration, or, for a resource outside collaborations,
      rows of a collaborating organization or of the own one;
    - organization scope: rows of the own organization (any of ``organization``), or, for a resource
      without an organization, of the own collaborations;
    - own scope: rows the calling user owns.
    """

    organization: tuple[str, ...] = ()
    # A node reaches only the rows of its own collaboration, whatever its rule's scope reaches (its
    # organization-scope rules reach every collaboration of its organization): its key, stolen, must not read
    # the nodes, addresses and studies of collaborations that other nodes of its organization serve.
    collaboration: str | None = None
    own: str | None = None
    rule_resource: str | None = None  # judged by another resource's rules
    # Rows every scope below global adds to what it shows (never to what it may change).
    also_viewable: Callable[[Principal], Q] | None = None
    # Per operation NAME: what a principal without any rule of it still reaches, instead of a 401.
    without_rule: dict[str, Callable[[Principal], Q]] = field(default_factory=dict)
    repeats_rows: bool = False  # the filter crosses a many-to-many relation
    # A row of an organization alone (no collaboration) shows in every collaboration of that organization:
    # a write at collaboration scope (``scope_condition``, ``reaches``) reaches only organizations in no
    # collaboration but the caller's, or an administrator of one collaboration would change what the
    # members of another see, or make accounts and roles there that their organization's own
    # administrators later give rights in those collaborations.
    partner_writes_confined: bool = False
    # A node writes only its own row of this resource, whatever its rule's scope reaches: its key, stolen,
    # must not rename or re-address the other nodes of its organization, which serve other collaborations.
    node_writes_own_row: bool = False
    # The fields of a row a node may change, if not every field its rule allows: its key, stolen, must not
    # rename or re-address its organization as every partner sees it (a node only publishes its key). Judged
    # with the edit itself (``Principal.allows``): an edit that does not name its fields refuses a node.
    node_writes_fields: frozenset[str] | None = None
    # The fields of a row that only its own organization's users and nodes change, whatever their rule's
    # scope reaches: only they hold what it names (an organization's public key: the private key).
    own_organization_fields: frozenset[str] = frozenset()
    # The lookup of a row's job, where an algorithm container reaches the rows of its own job alone,
    # whatever its rule's scope reaches: a container runs code of whoever made the task, which must not
    # read the tasks and results of the collaboration's other jobs (only its own and its subtasks').
    container_job: str | None = None
    # Per list filter (``organization_id``, ``collaboration_id``) that does not follow ``reaches``:
    # what a value may name at each scope (a scope below global left out refuses every value; global
    # scope left out allows every value).
    filters: dict[str, dict[str, Reach]] = field(default_factory=dict)
    # Per resource whose rows each row shows on request (``include=``): where those lie.
    embeds: dict[str, Embedded] = field(default_factory=dict)

    def condition(self, scope: str, p: Principal) -> Q:
        """The rows ``scope`` (below global) reaches for ``p``."""
        if scope == COL:
            if self.collaboration:
                return Q(**{f"{self.collaboration}__in": p.collaboration_ids})
            return _any(
                Q(**{f"{lookup}__in": p.collaborating_organization_ids}) | Q(**{lookup: p.organization_id})
                for lookup in self.organization
            )
        if scope == ORG:
            if self.organization:
                return _any(Q(**{lookup: p.organization_id}) for lookup in self.organization)
            if self.collaboration:
                return Q(**{f"{self.collaboration}__in": p.collaboration_ids})
            return NOTHING
        if scope == OWN and self.own and p.is_user:
            return Q(**{self.own: p.id})
        return NOTHING


def _any(conditions: Iterable[Q]) -> Q:
    """The rows any of ``conditions`` gives (none without conditions)."""
    combined = NOTHING
    for position, condition in enumerate(conditions):
        combined = condition if position == 0 else combined | condition
    return combined


@dataclass(frozen=True)
class Embedded:
    """Rows of another resource that each row of a resource shows on request (``include=``), judged by
    that resource's view rules (``Principal.shows_embedded`` and ``visible(with_embedded=)``).

    ``shared``: the scopes below global at which every embedded row lies where its parent row lies (in
    its collaboration, of its organization, of its owner): a parent row within such a scope has its
    embedded rows within that same scope of the embedded resource. ``single``: the attribute holding the
    one embedded row of a parent row, which is then judged itself, as its own endpoint judges it.
    """

    shared: tuple[str, ...]
    single: str = ""

    def reach_of(self, scope: str) -> str:
        """The scope of the embedded resource that reaches the embedded rows of every parent row at
        ``scope``: that scope if shared, else the next broader one that is (global at the latest)."""
        broader = _SCOPES_DESC[: _SCOPES_DESC.index(scope) + 1]
        return next(s for s in reversed(broader) if s == GLO or s in self.shared)

    def covered_by(self, scope: str) -> str | None:
        """The broadest scope of the parent resource whose rows have all their embedded rows within
        ``scope`` of the embedded resource: ``scope`` if shared, else the next narrower one that is."""
        if scope == GLO:
            return GLO
        narrower = _SCOPES_DESC[_SCOPES_DESC.index(scope) :]
        return next((s for s in narrower if s in self.shared), None)


def _prefixed(condition: Q, prefix: str) -> Q:
    """``condition`` on the rows that ``prefix`` (a foreign key and ``__``) leads to."""
    children = [
        _prefixed(child, prefix) if isinstance(child, Q) else (f"{prefix}{child[0]}", child[1])
        for child in cast(list[Q | tuple[str, Any]], condition.children)
    ]
    return Q(*children, _connector=condition.connector, _negated=condition.negated)


def _meets(condition: Q, row: Any) -> bool:
    """Whether the stored ``row`` meets ``condition``: evaluated on the loaded row where the condition
    allows it, otherwise asked of the database."""
    matched = _matches(condition, row)
    if matched is None:
        matched = type(row)._default_manager.filter(pk=row.pk).filter(condition).exists()
    return matched


# What a filter value may name (``Scope.filters``).
Reach = Callable[[Principal, int], bool]


def any_value(_: Principal, __: int) -> bool:
    return True


def own_organization(p: Principal, organization_id: int) -> bool:
    return organization_id == p.organization_id


def auth_collaboration(p: Principal, collaboration_id: int) -> bool:
    return collaboration_id in p.collaboration_ids


def member_or_viewed_collaboration(p: Principal, collaboration_id: int) -> bool:
    return collaboration_id in p.collaboration_ids or p.reaches(
        "collaboration", "view", collaboration_id=collaboration_id
    )


def _own_roles(p: Principal) -> Q:
    return Q(id__in=p.role_ids)


def _node_runs(p: Principal) -> Q:
    # No rule edits runs: a node writes the runs it executes, its organization's in its collaboration,
    # while its organization is a member of that collaboration.
    if not p.is_node or p.node.collaboration_id not in p.collaboration_ids:
        return NOTHING
    return Q(organization_id=p.organization_id, task__collaboration_id=p.node.collaboration_id)


RESOURCE_SCOPES: dict[str, Scope] = {
    # Who sees every organization still learns the members of its own collaborations only (unless it
    # sees every collaboration); below that, collaboration scope reaches the auth collaborations' members.
    "organization": Scope(
        organization=("id",),
        partner_writes_confined=True,
        node_writes_fields=frozenset({"public_key"}),
        own_organization_fields=frozenset({"public_key"}),
        filters={"collaboration_id": {GLO: member_or_viewed_collaboration, COL: auth_collaboration}},
    ),
    # The members of a collaboration or a study are the organizations of its collaboration: within reach
    # of a scope below global only as collaborating organizations.
    "collaboration": Scope(collaboration="id", embeds={"organization": Embedded(shared=(COL,))}),
    # Oneself is always in reach, also without a rule (a user reads and, with own scope, edits
    # their own account).
    "user": Scope(
        organization=("organization_id",),
        partner_writes_confined=True,
        own="id",
        without_rule={"VIEW": lambda p: Q(id=p.id) if p.is_user else NOTHING},
    ),
    "node": Scope(
        organization=("organization_id",),
        collaboration="collaboration_id",
        node_writes_own_row=True,
        node_writes_fields=frozenset({"ip", "clear_ip"}),
    ),
    # vantage6's filters of the study list are laxer than ``reaches``: the scope narrows the rows anyway.
    "study": Scope(
        organization=("organizations",),
        collaboration="collaboration_id",
        repeats_rows=True,
        embeds={"organization": Embedded(shared=(COL,))},
        filters={
            "organization_id": {COL: any_value, ORG: own_organization},
            "collaboration_id": {COL: auth_collaboration, ORG: auth_collaboration},
        },
    ),
    # A task's runs (and results) lie where it does: judged on the task by the run rules (``task_runs``).
    "task": Scope(
        organization=("init_org_id",),
        collaboration="collaboration_id",
        own="init_user_id",
        container_job="job_id",
        embeds={"run": Embedded(shared=(COL, ORG, OWN))},
    ),
    "run": Scope(
        organization=("organization_id",),
        collaboration="task__collaboration_id",
        own="task__init_user_id",
        container_job="task__job_id",
        without_rule={"EDIT": _node_runs},
        # A run's task is in its collaboration and has its owner, but another organization may have
        # started it: the runs an organization executes include tasks of others.
        embeds={"task": Embedded(shared=(COL, OWN), single="task")},
    ),
    # The runs of a task, judged on the task by the run rules, as vantage6 judges them.
    "task_runs": Scope(
        organization=("init_org_id",),
        collaboration="collaboration_id",
        own="init_user_id",
        container_job="job_id",
        rule_resource="run",
    ),
    # Algorithm stores are governed by collaboration rules; global stores are seen by all who see any.
    "algorithmstore": Scope(
        collaboration="collaboration_id",
        rule_resource="collaboration",
        also_viewable=lambda _: Q(collaboration__isnull=True),
    ),
    # Entries whose actor or object belonged to the organization when they were written.
    "audit": Scope(organization=("actor_organization_id", "object_organization_id")),
    # Built-in roles and the caller's own roles are always part of what a role viewer sees.
    "role": Scope(
        organization=("organization_id",),
        partner_writes_confined=True,
        also_viewable=lambda p: Q(organization__isnull=True) | _own_roles(p),
        without_rule={"VIEW": _own_roles},
    ),
}
_NO_SCOPE = Scope()


# Models whose resource name is not their model name.
_MODEL_RESOURCES = {"auditentry": "audit"}


def get_for(
    principal: Principal,
    queryset: QuerySet[M] | PkLookup[M],
    pk: int | str,
    operation: str | None = "view",
    *,
    missing: str | ApiError,
    resource: str | None = None,
    refused: str | None = None,
    fields: Collection[str] | None = None,
) -> M:
    """The row of ``queryset`` (or of a compiled ``PkLookup``) with primary key ``pk``, fetched for
    ``principal``; an edit names the ``fields`` it changes (``Principal.allows``).

    No such row: to who views every row of ``resource``, a 404 with the message ``missing``, or
    ``missing`` itself when it is an error (a filter naming a row that does not exist is a 400); to
    anyone else the 401. A row out of reach of the principal's scope for ``operation`` on
    ``resource`` (by default the model's): the 401 (``refused``). With ``operation`` None the service
    that acts on the row judges it."""
    # An id of no row answers as one out of reach, but to who views all of its kind (``missing_to``):
    # otherwise a 404 for none and the 401 for another's row would tell which ids exist.
    missing = missing_to(principal, resource or _resource_of(queryset.model), missing, refused)
    row = fetch(queryset, pk, missing=missing)
    if operation is not None:
        resource = resource or _resource_of(type(row))
        principal.require(
            principal.allows(resource, row, operation, fields=fields),
            principal.fields_refusal(resource, operation, fields, row) or refused,
        )
    return row


def fetch_named(
    principal: Principal,
    queryset: QuerySet[M] | PkLookup[M],
    pk: int | str,
    *,
    missing: str | ApiError,
    through: str = "",
    reach: Callable[[M], bool] | None = None,
    listed: str = "",
) -> M:
    """The row with primary key ``pk`` that a request body or a list filter names, for the checks
    that follow. The principal must view it (or the related row ``through`` names, loaded with it),
    or ``reach`` it (may act on it without viewing it); otherwise the 401, and a missing row is that
    same 401 (``missing_to`` the row's resource, or the ``listed`` one of a list filter): what such
    ids name tells the caller nothing it may not see."""
    row = queryset(int(pk)) if isinstance(queryset, PkLookup) else by_pk(queryset, pk)
    resource = listed or _resource_of(queryset.model)
    return judged_named(principal, row, resource, missing=missing, through=through, reach=reach)


def fetch_in_collaboration(
    principal: Principal,
    queryset: QuerySet[M] | PkLookup[M],
    pk: int | str,
    *,
    resource: str,
    operation: str,
    missing: str | ApiError,
    collaboration: str = "pk",
) -> M:
    """The row with primary key ``pk`` that a request body names to ``operation`` on ``resource`` in its
    collaboration (``collaboration``: the attribute holding that collaboration's id; a collaboration's
    own ``pk``): the 401 unless the principal ``names_collaboration``, and a missing row is that same 401
    but to who views every row of its kind (``missing_to``)."""
    row = queryset(int(pk)) if isinstance(queryset, PkLookup) else by_pk(queryset, pk)
    if row is None:
        raise missing_to(principal, _resource_of(queryset.model), missing)
    principal.require(principal.names_collaboration(getattr(row, collaboration), resource, operation))
    return row


def judged_named(
    principal: Principal,
    row: M | None,
    resource: str,
    *,
    missing: str | ApiError,
    through: str = "",
    reach: Callable[[M], bool] | None = None,
) -> M:
    """``fetch_named``'s judgement of a row of ``resource`` read already (None: no such row), for a
    write that read it with its caller."""
    if row is None:
        raise missing_to(principal, resource, missing)
    judged = getattr(row, through) if through else row
    viewed = principal.allows(_resource_of(type(judged)), judged)
    principal.require(viewed or (reach is not None and reach(row)))
    return row


def missing_to(
    principal: Principal, resource: str, missing: str | ApiError, refused: str | None = None
) -> ApiError:
    """The answer to an id that names no row of ``resource``: only who views every row of it learns so
    (``missing``; vantage6 tells everyone); to anyone else it is the 401 of a row out of reach, with the
    message (``refused``) such a row gets."""
    if principal.max_scope(principal.rule_resource(resource), "view") != GLO:
        return unauthorized(refused) if refused else unauthorized()
    return not_found(missing) if isinstance(missing, str) else missing


def _resource_of(model: type[Model]) -> str:
    name = str(model._meta.model_name)
    return _MODEL_RESOURCES.get(name, name)


def fetch(queryset: QuerySet[M] | PkLookup[M], pk: int | str, *, missing: str | ApiError) -> M:
    """The row of ``queryset`` (or of a ``PkLookup``: the hot reads, their SQL compiled once) with
    primary key ``pk``, not judged: for a service that judges it itself, or a filter value whose
    reach is checked apart. No such row: as ``get_for``."""
    row = queryset(int(pk)) if isinstance(queryset, PkLookup) else by_pk(queryset, pk)
    if row is None:
        raise not_found(missing) if isinstance(missing, str) else missing
    return row


def role_rule_keys(role_name: str) -> Subquery:
    """The ids of the rules of the built-in node or container role as ``"3,5,7"`` (``rule_keys``), read
    with the node's or the container's task's row on every request, as a user's own are, and the only way
    their principals get their rules: a seeding of the catalogue by another process (an upgrade's
    ``bootstrap``) holds from its commit on, in every process, without a restart. The rule sets are
    parsed once per process (``_rules_of_keys``)."""
    from accounts.models import Role

    rules = Role.rules.through.objects.filter(role__name=role_name, role__is_default_role=True)
    return joined(rules, Cast("rule_id", CharField()), RULE_SEPARATOR)


def rules_of_user(user_id: int) -> frozenset[tuple[str, str, str]]:
    """All rules of a user: those of its roles and those given directly, in one query."""
    from accounts.models import Rule

    via_roles = Rule.objects.filter(roles__users=user_id).values_list("name", "scope", "operation")
    direct = Rule.objects.filter(users=user_id).values_list("name", "scope", "operation")
    return frozenset(via_roles.union(direct))


def _global_rule(resource: str, operation: str) -> QuerySet:
    """The rule whose holders ``reaches_every(resource, operation)``: that of global scope."""
    from accounts.models import Rule

    return Rule.objects.filter(name=Principal.rule_resource(resource), scope=GLO, operation=_op(operation))


def _global_rule_of(resource: str, operation: str) -> CompiledRows:
    def rows(user: int) -> QuerySet:
        return _global_rule(resource, operation).filter(_held_by(user)).values_list("id")

    return CompiledRows(rows, "user")


def users_reaching_every(resource: str, operation: str, *, through: str = "") -> Q:
    """The users for whom ``Principal.reaches_every(resource, operation)`` holds (the rule given directly
    or through a role), as a condition on the rows that ``through`` (a relation to a user, ending in
    ``__``) leads from: those whose reach grows and shrinks with the collaborations themselves, such as
    the rooms of a global ``event`` rule."""
    rule = _global_rule(resource, operation)
    return Q(**{f"{through}rules__in": rule}) | Q(**{f"{through}roles__rules__in": rule})


# ``reaches_every``'s rule rows by (resource, operation), their SQL compiled once per database.
_global_rules: dict[tuple[str, str], CompiledRows] = {}


def reaches_every_sql(user_id: int, resource: str, operation: str) -> Statement:
    """``Principal.reaches_every(resource, operation)`` of user ``user_id`` (not loaded) as an SQL
    condition, for a write that checks its caller in its own statement: one of the user's rules
    (``_held_by``, as the caller's lookup reads them) is that global rule."""
    key = (Principal.rule_resource(resource), _op(operation))
    rules = _global_rules.get(key)
    if rules is None:
        rules = _global_rules[key] = _global_rule_of(*key)
    query, params = rules.query(connection, {"user": user_id})
    return f"EXISTS ({query.sql})", params


def _rules_of_outer_user() -> Subquery:
    """The ids of all rules of the outer user (via its roles and given directly) as ``"3,5,7"``: a
    tenth of the text of their names, which ``_rules_of_keys`` finds by id."""
    from accounts.models import Rule

    rules = Rule.objects.filter(_held_by(OuterRef(OuterRef("pk"))))
    return joined(rules, Cast("id", CharField()), RULE_SEPARATOR)


def _held_by(user: Any) -> Q:
    """The rules a user holds (``user``: its id, or a reference to it): those of its roles and those
    given directly."""
    from accounts.models import Role, User

    via_roles = Role.rules.through.objects.filter(role__users=user).values("rule_id")
    direct = User.rules.through.objects.filter(user_id=user).values("rule_id")
    return Q(id__in=via_roles) | Q(id__in=direct)


RULE_SEPARATOR = ","


# The rows of the collaborations app that the engine and the user and role services read, registered
# by that app at start-up (its AppConfig.ready()): accounts imports no app above it.
_rows: dict[str, Callable[[], QuerySet]] = {}


def register_collaborations(
    *,
    organizations: Callable[[], QuerySet],
    collaborations: Callable[[], QuerySet],
    memberships: Callable[[], QuerySet],
) -> None:
    """``memberships`` gives one row per organization in a collaboration (``collaboration_id``,
    ``organization_id``)."""
    _rows.update(organizations=organizations, collaborations=collaborations, memberships=memberships)


def organizations() -> QuerySet:
    return _rows["organizations"]()


def collaborations() -> QuerySet:
    return _rows["collaborations"]()


def memberships() -> QuerySet:
    return _rows["memberships"]()


def with_memberships(queryset: QuerySet, *, own_collaboration: bool = False) -> QuerySet:
    """Users or nodes annotated with the collaborations of their organization (``own_collaboration``:
    only the row's own collaboration, for nodes) and the organizations in those (with repeats), as
    ``"1,5,7"``, which most scope checks need: loaded with the caller, they cost no query of their own."""
    own = memberships().filter(organization_id=OuterRef("organization_id"))
    shared = memberships().filter(organization_id=OuterRef(OuterRef("organization_id")))
    if own_collaboration:
        own = own.filter(collaboration_id=OuterRef("collaboration_id"))
        shared = shared.filter(collaboration_id=OuterRef(OuterRef("collaboration_id")))
    shared = shared.values("collaboration_id")
    return queryset.annotate(
        collaboration_keys=joined(own, Cast("collaboration_id", CharField())),
        partner_keys=joined(
            memberships().filter(collaboration_id__in=shared), Cast("organization_id", CharField())
        ),
    )


def _loaded_ids(identity: object, name: str) -> frozenset[int] | None:
    keys: Any = getattr(identity, name, _NOT_LOADED)
    if keys is _NOT_LOADED:
        return None
    return frozenset(int(key) for key in keys.split(",")) if keys else frozenset()


def users_with_rules() -> QuerySet:
    """Users annotated with ``rule_keys`` (all their rules in one string) and their memberships, so
    that loading the caller is one query."""
    from accounts.models import User

    return with_memberships(User.objects.annotate(rule_keys=_rules_of_outer_user()))


def _rules_of_keys(keys: str | None) -> frozenset[tuple[str, str, str]]:
    """The rule set of a ``rule_keys`` string of rule ids; the few distinct sets of a server are
    parsed once."""
    rules = _PARSED_RULES.get(keys)
    if rules is None:
        ids = [int(key) for key in keys.split(RULE_SEPARATOR)] if keys else []
        if any(pk not in _RULE_BY_ID for pk in ids):
            _load_rules()
        # An id still unknown is a rule deleted since the caller was read: it grants nothing.
        rules = frozenset(_RULE_BY_ID[pk] for pk in ids if pk in _RULE_BY_ID) if ids else EMPTY
        if len(_PARSED_RULES) >= 10_000:
            _PARSED_RULES.clear()
        _PARSED_RULES[keys] = rules
    return rules


def _load_rules() -> None:
    """Every rule by id. A rule's name, scope and operation never change (the catalogue only adds
    rules, the API cannot edit them), so the table read once serves until a new id shows up."""
    from accounts.models import Rule

    _RULE_BY_ID.update(
        (pk, (name, scope, operation))
        for pk, name, scope, operation in Rule.objects.values_list("id", "name", "scope", "operation")
    )


_PARSED_RULES: dict[str | None, frozenset[tuple[str, str, str]]] = {}
_RULE_BY_ID: dict[int, tuple[str, str, str]] = {}
EMPTY: frozenset[tuple[str, str, str]] = frozenset()


def principal_for_user(user: User) -> Principal:
    """The principal of ``user``; a user loaded through ``users_with_rules`` costs no further query."""
    # Users that Django loads itself come without ``rule_keys``: the admin's login form and session user,
    # and any user row whose ``is_staff`` or ``has_perm`` is asked.
    keys: Any = getattr(user, "rule_keys", _NOT_LOADED)
    rules = rules_of_user(user.pk) if keys is _NOT_LOADED else _rules_of_keys(keys)
    return Principal(kind="user", organization_id=user.organization_id, rules=rules, user=user)


_NOT_LOADED = object()


def nodes_with_rules(queryset: QuerySet) -> QuerySet:
    """Nodes annotated with their memberships and ``rule_keys`` (the node role's rules), so that
    loading the caller is one query."""
    return with_memberships(queryset.annotate(rule_keys=role_rule_keys(NODE)), own_collaboration=True)


def principal_for_node(node) -> Principal:
    """The principal of ``node``, loaded through ``nodes_with_rules``."""
    rules = _rules_of_keys(node.rule_keys)
    return Principal(kind="node", organization_id=node.organization_id, rules=rules, node=node)


def principal_for_system() -> Principal:
    """The server itself (management commands): every rule, audited as ``system``."""
    from accounts.models import Rule

    rules = frozenset(Rule.objects.values_list("name", "scope", "operation"))
    return Principal(kind="system", organization_id=0, rules=rules)


def principal_for_container(claims: dict, task: Any) -> Principal:
    """The principal of a container token's ``claims``, whose ``task`` was read with ``rule_keys`` (the
    container role's, ``role_rule_keys``)."""
    return Principal(
        kind="container",
        organization_id=claims["organization_id"],
        rules=_rules_of_keys(task.rule_keys),
        claims=claims,
        task=task,
    )
