"""The permission matrix: every endpoint, default role and place of its target, with the expected
outcome derived from the rule table instead of written out case by case.

The model
---------
The caller (``ROLES``) is a user of organization A who holds one default role, or one custom role
of A with every collaboration-scope rule and nothing else (``COL_ONLY``), or the node of A in AB
(``NODE``), or the algorithm container of a task of A in AB run by that node (``CONTAINER``). The
``world``
fixture (tests/conftest.py) gives three *places* for a target::

    own      organization A   (collaboration AB)
    collab   organization B   (shares collaboration AB with A)
    other    organization C   (alone in collaboration C)

``Rules(role)`` holds the role's rules as accounts/catalogue.py defines them (``SYNCED_ROLES``; Root
has every rule of ``RULES``) and answers the helpers of permissions.md §3 for a place:
``allow_org``, ``allow_org_in_col``, ``can_col``, ``max_scope``, ``at_least`` and ``holds``. They
are written here from the spec, apart from accounts/permissions.py, so the matrix checks the
engine rather than repeating it.

A ``Case`` is one endpoint (or one variant of it)::

    Case(
        name="user detail",
        method="get",
        route="user/<pk>",                               # as endpoints_of() spells the URL pattern
        target=lambda ctx: make_user(ctx.org),           # built in ctx.place (ctx.org, ctx.collab)
        path=lambda ctx: f"/api/user/{ctx.target.pk}",
        body=None,                                       # or lambda ctx: {...} for writes
        status=lambda r, place: 200 if r.allow_org("user", "view", place) else 401,
        rows=None,                                       # lists: lambda r, place: {places returned}
        check=None,                                      # optional: lambda ctx, response, expected
        per_place=True,                                  # False: the place does not matter (one run)
        auth="access",                                   # "refresh" or "none" for token endpoints
    )

``clients`` names the client types the endpoint serves (rest-api.md "Who"); any other caller gets
the 401 of the client-type gate. ``Rules.kind`` tells a status callable which kind the caller is.

For a list case (``rows`` set) a target is built in *every* place first (``ctx.targets``), and the
rows of the answer are matched against them: exactly the places ``rows(rules, place)`` names must
come back. ``status`` and ``rows`` must be written in terms of ``Rules``; never as a table of
roles, so a changed role or rule changes the expectations with it.

Registering the cases of another app
------------------------------------
In ``tests/<app>/test_matrix.py``::

    from tests.matrix import Case, assert_routes_covered, matrix_params, run_case

    CASES = [Case(...), ...]

    @pytest.mark.parametrize(*matrix_params(CASES))
    def test_matrix(api, world, case, role, place):
        run_case(api, world, case, role, place)

    def test_every_endpoint_has_a_case():
        assert_routes_covered(CASES, "collaborations.urls", exempt={("POST", "..."): "why"})

``assert_routes_covered`` lists every (method, route) the app's urlconf serves, so an endpoint added
later without a case (or an explicit exemption with a reason) fails the suite.
``assert_rules_covered(CASES, resources)`` fails when a (resource, operation) of the catalogue that
the app owns is not named by any case (``Case.rules``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from django.urls import URLPattern, URLResolver

from accounts.catalogue import (
    COL_ADMIN,
    CONTAINER,
    NODE,
    ORG_ADMIN,
    RESEARCHER,
    ROOT,
    RULES,
    SYNCED_ROLES,
    VIEWER,
)
from accounts.sessions import start_login
from accounts.tokens import container_token
from tests.factories import make_task, make_user

COL_ONLY = "collaboration scope only"  # a custom role of A: every collaboration-scope rule
ROLES = (VIEWER, RESEARCHER, ORG_ADMIN, COL_ADMIN, ROOT, COL_ONLY, NODE, CONTAINER)
USER_ONLY = ("user",)
ANY_CLIENT = ("user", "node", "container")
PLACES = ("own", "collab", "other")
OWN, COLLAB, OTHER = PLACES

_SCOPE_CODES = {"own": "own", "org": "org", "col": "col", "glo": "glo"}
_SCOPE_RANK = {"own": 0, "org": 1, "col": 2, "glo": 3}
_OP_CODES = {"view": "v", "edit": "e", "create": "c", "delete": "d", "send": "s", "receive": "r"}
# The collaboration a place's organization shares with the caller's organization A, if any.
_SHARED_WITH_A = {OWN: True, COLLAB: True, OTHER: False}


def _op(operation: str) -> str:
    return _OP_CODES.get(operation, operation)


def _triples_of(role: str) -> frozenset[tuple[str, str, str]]:
    if role == NODE:
        return frozenset((r[0], r[1], r[2]) for r in RULES if r[4])
    if role == CONTAINER:
        return frozenset((r[0], r[1], r[2]) for r in RULES if r[5])
    if role == COL_ONLY:
        return frozenset((r[0], r[1], r[2]) for r in RULES if r[1] == "col")
    keys = SYNCED_ROLES[role][1]
    return frozenset(keys if keys is not None else ((r[0], r[1], r[2]) for r in RULES))


class Rules:
    """The rules of a caller, and the permissions.md §3 helpers over the three places."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.kind = role if role in (NODE, CONTAINER) else "user"
        self.triples = _triples_of(role)

    def has(self, resource: str, scope: str, operation: str) -> bool:
        return (resource, _SCOPE_CODES[scope], _op(operation)) in self.triples

    def max_scope(self, resource: str, operation: str) -> str | None:
        for scope in ("glo", "col", "org", "own"):
            if self.has(resource, scope, operation):
                return scope
        return None

    def at_least(self, scope: str, resource: str, operation: str) -> bool:
        best = self.max_scope(resource, operation)
        return best is not None and _SCOPE_RANK[best] >= _SCOPE_RANK[scope]

    def allow_org(self, resource: str, operation: str, place: str) -> bool:
        """An object that belongs to the organization of ``place``."""
        return (
            self.has(resource, "glo", operation)
            or (self.has(resource, "org", operation) and place == OWN)
            or (self.has(resource, "col", operation) and _SHARED_WITH_A[place])
        )

    def allow_org_in_col(self, resource: str, operation: str, org_place: str, col_place: str) -> bool:
        """An object of the organization of ``org_place`` in the collaboration of ``col_place``."""
        return (
            self.has(resource, "glo", operation)
            or (self.has(resource, "org", operation) and org_place == OWN)
            or (self.has(resource, "col", operation) and _SHARED_WITH_A[col_place])
        )

    def can_col(self, resource: str, operation: str, place: str) -> bool:
        """Collaboration scope on the collaboration of ``place``."""
        return self.has(resource, "glo", operation) or (
            self.has(resource, "col", operation) and _SHARED_WITH_A[place]
        )

    def holds(self, triples: Iterable[tuple[str, str, str]]) -> bool:
        """Hold what you grant: every (resource, scope code, operation code) at that scope or broader."""
        return all(self.at_least(scope, resource, op) for resource, scope, op in triples)

    def holds_role(self, role: str) -> bool:
        return self.holds(Rules(role).triples)

    def places(self, resource: str, operation: str = "view") -> set[str]:
        """The places whose organization-owned objects ``allow_org`` lets through."""
        return {place for place in PLACES if self.allow_org(resource, operation, place)}


def members(place: str) -> set[str]:
    """The places whose organization is in the collaboration of ``place`` (AB or C)."""
    return {OWN, COLLAB} if _SHARED_WITH_A[place] else {OTHER}


@dataclass
class Context:
    world: object
    role: str
    place: str | None
    caller: object
    target: object = None
    targets: dict = field(default_factory=dict)

    @property
    def org(self):
        return {OWN: self.world.org_a, COLLAB: self.world.org_b, OTHER: self.world.org_c}[self.place or OWN]

    @property
    def collab(self):
        return self.world.collab_c if self.place == OTHER else self.world.collab_ab


@dataclass
class Case:
    name: str
    method: str
    route: str
    path: Callable[[Context], str]
    status: Callable[[Rules, str | None], int]
    target: Callable[[Context], object] | None = None
    body: Callable[[Context], object] | None = None
    rows: Callable[[Rules, str | None], set[str]] | None = None
    check: Callable[[Context, object, int], None] | None = None
    per_place: bool = True
    auth: str = "access"
    clients: tuple[str, ...] = USER_ONLY
    # The (resource, operation) pairs of the catalogue this case exercises.
    rules: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.name


def ok_if(allowed: bool, status: int = 200) -> int:
    """The expected status: ``status`` when the rules allow the call, the 401 of a refusal otherwise."""
    return status if allowed else 401


def list_case(
    resource: str,
    target: Callable[[Context], object],
    path: str,
    rows: Callable[[Rules, str | None], set[str]],
    clients: tuple[str, ...] = USER_ONLY,
) -> Case:
    """The unfiltered list of ``resource`` at ``path``: any view rule of it allows the call, and the
    ``rows`` the caller's rules reach are listed."""
    return Case(
        f"{resource} list", "get", resource, target=target, per_place=False, rules=((resource, "view"),),
        path=lambda _ctx: path, status=lambda r, _: ok_if(r.max_scope(resource, "view") is not None),
        rows=rows, clients=clients,
    )  # fmt: skip


def deleted_unless_refused(model):
    """A ``check`` of a delete case: the target is gone exactly when the call succeeded."""

    def check(ctx, _response, expected: int) -> None:
        assert model.objects.filter(pk=ctx.target.pk).exists() == (expected != 200)

    return check


def place_node(ctx) -> object:
    """The node of the place's organization in the place's collaboration."""
    from nodes.models import Node

    return Node.objects.get(organization=ctx.org, collaboration=ctx.collab)


def matrix_tests(
    cases: list[Case],
    urlconf: str,
    resources: Iterable[str],
    exempt: dict[tuple[str, str], str] | None = None,
) -> tuple[Callable, Callable, Callable]:
    """The tests of an app's matrix: each case for each role and place, then that every endpoint of
    ``urlconf`` has a case (or is ``exempt``) and that the cases exercise every rule of ``resources``.
    A test module takes them as its own: ``test_matrix, test_every_endpoint_has_a_case,
    test_every_..._rule_is_exercised = matrix_tests(...)``."""
    import pytest

    @pytest.mark.parametrize(*matrix_params(cases))
    def test_matrix(api, world, case, role, place) -> None:
        run_case(api, world, case, role, place)

    def test_every_endpoint_has_a_case() -> None:
        assert_routes_covered(cases, urlconf, exempt or {})

    def test_every_rule_is_exercised() -> None:
        assert_rules_covered(cases, resources)

    return test_matrix, test_every_endpoint_has_a_case, test_every_rule_is_exercised


def matrix_params(cases: list[Case]) -> tuple[str, list]:
    """``pytest.mark.parametrize`` arguments: each case for each role (and place, when it matters)."""
    import pytest

    params = []
    for case in cases:
        # A call without a token has no caller to vary.
        for role in ROLES if case.auth != "none" else ROLES[:5]:
            for place in PLACES if case.per_place else (None,):
                test_id = f"{case.name}-{role}" + (f"-{place}" if place else "")
                params.append(pytest.param(case, role, place, id=test_id.replace(" ", "_")))
    return "case,role,place", params


@dataclass
class ContainerCaller:
    """The algorithm container of an open task of A in AB, run by the node of A."""

    claims: dict

    @property
    def pk(self) -> int:
        return self.claims["node_id"]


def _caller(world, role: str) -> object:
    """A user of A with ``role``, the node of A in AB, or a container of that node."""
    if role == NODE:
        return world.node_a
    if role == CONTAINER:
        from tests.tasks.conftest import container_identity

        task = make_task(world.collab_ab, world.org_a, world.org_a)
        return ContainerCaller(container_identity(task, world.node_a))
    if role == COL_ONLY:
        from accounts.models import Role, Rule

        custom = Role.objects.create(name=COL_ONLY, organization=world.org_a)
        custom.rules.set(Rule.objects.filter(scope="COLLABORATION"))
    return make_user(world.org_a, role)


def _headers(case: Case, caller) -> dict[str, str]:
    if case.auth == "none":
        return {}
    if isinstance(caller, ContainerCaller):
        return {"HTTP_AUTHORIZATION": f"Bearer {container_token(caller.claims)}"}
    access, refresh = start_login(caller, "user" if hasattr(caller, "roles") else "node")
    return {"HTTP_AUTHORIZATION": f"Bearer {refresh if case.auth == 'refresh' else access}"}


def run_case(api, world, case: Case, role: str, place: str | None) -> None:
    """Build the target(s), call the endpoint as a ``role`` caller of organization A, check the outcome."""
    ctx = Context(world=world, role=role, place=place, caller=_caller(world, role))
    if case.target is not None:
        if case.rows is not None:
            ctx.targets = {p: case.target(replace(ctx, place=p)) for p in PLACES}
            ctx.target = ctx.targets[place] if place else None
        else:
            ctx.target = case.target(ctx)
    rules = Rules(role)
    # The client-type gate answers first.
    expected = case.status(rules, place) if rules.kind in case.clients else 401
    kwargs = _headers(case, ctx.caller)
    if case.body is not None:
        kwargs.update(data=case.body(ctx), format="json")
    response = getattr(api, case.method)(case.path(ctx), **kwargs)
    where = f"{case.name} as {role}" + (f" on a target in {place}" if place else "")
    assert response.status_code == expected, f"{where}: {response.status_code} {response.content[:300]!r}"
    if case.rows is not None and expected == 200:
        returned = {row["id"] for row in response.json()["data"]}
        got = {p for p, target in ctx.targets.items() if target.pk in returned}
        assert got == case.rows(rules, place), f"{where}: rows of {sorted(got)}"
    if case.check is not None:
        case.check(ctx, response, expected)


# --- coverage -----------------------------------------------------------------------------------------
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _route(pattern) -> str:
    text = str(pattern.pattern)
    return _GROUP.sub(r"<\1>", text).lstrip("^").rstrip("$").removesuffix("\\.(?P<format>[a-z0-9]+)/?")


def endpoints_of(urlconf: str) -> set[tuple[str, str]]:
    """Every (METHOD, route) an app's urlconf serves, e.g. ("GET", "user/<pk>")."""
    found: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + _route(pattern))
                continue
            assert isinstance(pattern, URLPattern)
            view = pattern.callback
            actions = getattr(view, "actions", None)
            if actions is not None:
                methods = actions.keys()
            else:
                view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
                methods = [m for m in view_class.http_method_names if hasattr(view_class, m)]
            found.update(
                (method.upper(), prefix + _route(pattern))
                for method in methods
                if method not in ("head", "options")
            )

    walk(importlib.import_module(urlconf).urlpatterns, "")
    return found


def assert_routes_covered(cases: list[Case], urlconf: str, exempt: dict[tuple[str, str], str]) -> None:
    covered = {(case.method.upper(), case.route) for case in cases}
    missing = endpoints_of(urlconf) - covered - set(exempt)
    assert not missing, f"endpoints without a matrix case: {sorted(missing)}"
    stale = (covered | set(exempt)) - endpoints_of(urlconf)
    assert not stale, f"matrix cases of endpoints that do not exist: {sorted(stale)}"


def assert_rules_covered(cases: list[Case], resources: Iterable[str]) -> None:
    resources = set(resources)
    named = {pair for case in cases for pair in case.rules}
    wanted = {(resource, _op_name(op)) for resource, _scope, op, *_ in RULES if resource in resources}
    missing = wanted - named
    assert not missing, f"rules no matrix case exercises: {sorted(missing)}"


def _op_name(code: str) -> str:
    return {v: k for k, v in _OP_CODES.items()}[code]
