"""DRF authentication by ``Authorization: Bearer <JWT>`` for users, nodes and algorithm containers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, connection
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.permissions import (
    Principal,
    nodes_with_rules,
    principal_for_container,
    principal_for_node,
    principal_for_user,
    users_with_rules,
)
from accounts.sessions import check_current, current_login_sql, with_revoked_logins
from accounts.tokens import TokenError, decode
from vantage6.api.errors import ApiError
from vantage6.api.sql import PkLookup, Statement

M = TypeVar("M", bound=Model)

logger = logging.getLogger(__name__)

# last_seen is written at most this often per identity: every request would cost a write otherwise.
LAST_SEEN_RESOLUTION = timedelta(seconds=30)


def token_of_header(header: str) -> str | None:
    """The token of an ``Authorization`` header's value as Django reads it (its lines joined by commas,
    latin-1), or None when it is not ``Bearer <JWT>``. One reading for the request's share of the threads
    and its authentication: a spelling read as anonymous by one and as the user by the other let a user's
    requests count against the requests without a token as well as against its own."""
    parts = header.split()
    if len(parts) != 2 or parts[0] != "Bearer":
        return None
    return parts[1]


def bearer_token(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    token = token_of_header(header)
    if token is None:
        raise ApiError(422, "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'")
    return token


def _touch_last_seen(identity) -> None:
    from accounts.models import Authenticatable

    now = timezone.now()
    if identity.last_seen is None or now - identity.last_seen >= LAST_SEEN_RESOLUTION:
        identity.last_seen = now
        Authenticatable.objects.filter(pk=identity.pk).update(last_seen=now)
        _seen_at(identity.pk, now)


# When this process last wrote ``last_seen`` of an identity: a caller that is not loaded
# (``DeferredCaller.seen``) writes it no more often than a loaded one. Noted with each write only, not
# with every loaded caller: a value another process wrote costs the unloaded path one update that
# changes no row, once per resolution.
_seen_written: dict[int, datetime] = {}
SEEN_WRITTEN_KEPT = 65536


def _touch_last_seen_unloaded(identity_id: int) -> None:
    """``_touch_last_seen`` for an identity whose row was not read: at most once per resolution from this
    process, and only where the stored value is older."""
    from accounts.models import Authenticatable

    now = timezone.now()
    written = _seen_written.get(identity_id)
    if written is not None and now - written < LAST_SEEN_RESOLUTION:
        return
    _seen_at(identity_id, now)
    stale = Q(last_seen__isnull=True) | Q(last_seen__lte=now - LAST_SEEN_RESOLUTION)
    Authenticatable.objects.filter(stale, pk=identity_id).update(last_seen=now)


def _seen_at(identity_id: int, when: datetime) -> None:
    if len(_seen_written) >= SEEN_WRITTEN_KEPT:
        _seen_written.clear()
    _seen_written[identity_id] = when


# Supplied at start-up by the apps above accounts (their AppConfig.ready()), which accounts does not
# import: the rows of nodes (nodes), and the task a container token names while it still runs (tasks).
_registered: dict[str, Callable] = {}


def register_node_rows(rows: Callable[[], QuerySet]) -> None:
    _registered["node_rows"] = rows


def register_container_check(task_if_running: Callable[[dict], Any]) -> None:
    """``task_if_running(identity)``: the task of the container a token names, or None when the
    container may no longer act."""
    _registered["container_task"] = task_if_running


def _node_queryset() -> QuerySet:
    return with_revoked_logins(nodes_with_rules(_registered["node_rows"]()))


def _user_queryset() -> QuerySet:
    return with_revoked_logins(users_with_rules())


# The caller by primary key in one query compiled once (a user or node with its rules and memberships,
# and the ended logins its token is checked against).
_load_user, _load_node = PkLookup(_user_queryset), PkLookup(_node_queryset)


# How the account a user's or node's token names is loaded, and made the request's principal.
_ACCOUNTS: dict[str, tuple[PkLookup[Any], Callable[[Any], Principal]]] = {
    "user": (_load_user, principal_for_user),
    "node": (_load_node, principal_for_node),
}

CONTAINER_TOKEN_ENDED = "This container token is no longer valid"


def principal_from_claims(claims: dict, *, seen: bool = True) -> Principal:
    """Load the identity a verified token names: 401 when it no longer exists or the token was
    revoked; a container token only while its task runs on a node that is still in place.

    ``seen``: the call is a sign of life that sets ``last_seen`` (REST calls; not a socket handshake).
    """
    client_type = claims.get("client_type")
    sub = claims["sub"]
    if client_type == "container":
        if not isinstance(sub, dict) or "task_id" not in sub or claims.get("purpose"):
            raise ApiError(422, "Invalid container token")
        task = _registered["container_task"](sub)
        if task is None:
            raise ApiError(401, CONTAINER_TOKEN_ENDED)
        return principal_for_container(sub, task)
    if not isinstance(client_type, str) or client_type not in _ACCOUNTS:
        raise ApiError(422, "Unknown client type in token")
    load = _ACCOUNTS[client_type][0]
    account = load(sub) if type(sub) is int else None  # not True, which Python counts as 1
    return _principal_of_account(client_type, account, claims, seen=seen)


def _principal_of_account(client_type: str, account: Any, claims: dict, *, seen: bool = True) -> Principal:
    """The principal of the user or node ``account`` (None: not found) that ``claims`` name, judged as
    ``principal_from_claims`` judges it."""
    if account is None:  # vantage6's words, for a node too
        raise ApiError(401, f"Error loading the user {claims['sub']}")
    check_current(account, claims)
    if seen:
        _touch_last_seen(account)
    return _ACCOUNTS[client_type][1](account)


# The verified claims of the tokens in use, by token: a client sends the same token with every
# request until it expires, and its signature and claims need checking once (its expiry on every
# use; revocation is checked against the caller's row on every use). Only valid tokens are kept.
_verified: dict[str, dict] = {}
VERIFIED_TOKENS_KEPT = 4096


def verified_claims(raw: str) -> dict:
    """``decode(raw)``, from the tokens verified before while they have not expired."""
    claims = _verified.get(raw)
    if claims is not None:
        expiry = claims.get("exp")
        if expiry is None or int(expiry) > time.time():
            return claims
        _verified.pop(raw, None)
    claims = decode(raw)
    if len(_verified) >= VERIFIED_TOKENS_KEPT:
        _verified.clear()
    _verified[raw] = claims
    return claims


# The scope key under which ``request_identity`` leaves the token it checked and the outcome, for the
# request's authentication: a token is verified once per request.
CHECKED_TOKEN = "vantage6.checked_token"


def request_identity(scope: dict) -> Hashable:
    """Who an HTTP request comes from, for its share of the request threads (``vantage6.handler.Shares``):
    the user, node or container its token names once the token's signature and times are checked; None
    for every request without a valid token together. One anonymous identity rather than one per client
    address: behind a proxy every client has the proxy's address, and one per address would give an
    attacker with many addresses every thread; so requests without a token (logins, among them) take at
    most a share, and those of signed-in users and nodes always have the rest."""
    # As Django's request reads it (``ASGIRequest``): every line of the header, joined.
    lines = [value.decode("latin-1") for name, value in scope["headers"] if name.lower() == b"authorization"]
    token = token_of_header(",".join(lines)) if lines else None
    if token is None:
        return None  # authentication answers it
    try:
        claims = verified_claims(token)
    except TokenError as exc:
        scope[CHECKED_TOKEN] = (token, exc)
        return None
    scope[CHECKED_TOKEN] = (token, claims)
    sub = claims["sub"]
    if type(sub) is dict:
        # A container's: all the containers of its node together. A node takes a token for each task its
        # organization has a run of, and a container creates subtasks (more tasks, more tokens): one share
        # per task gave the holder of a node's key as many shares as it liked, every thread. The containers
        # of other nodes (a task's runs at other organizations) are other parties.
        node_id = sub.get("node_id")
        return ("container", node_id) if type(node_id) is int else None
    return (claims.get("client_type"), sub) if type(sub) is int else None


def _checked_claims(request: Request, raw: str) -> dict:
    """The claims of ``raw``, verified by ``request_identity`` for this request or now."""
    checked = getattr(request._request, "scope", {}).get(CHECKED_TOKEN)
    if checked is None or checked[0] != raw:
        return verified_claims(raw)
    if isinstance(checked[1], TokenError):
        raise checked[1]
    return checked[1]


class DeferredCaller:
    """The user or node of a verified access token, not loaded yet. A write that checks the caller in its
    own statement (``current_sql``, and whatever right it needs) saves the caller's lookup, a round trip;
    everything else loads it (``load``: every check of ``principal_from_claims``, its 401s)."""

    def __init__(self, claims: dict) -> None:
        self.claims = claims
        self.kind: str = claims["client_type"]
        self.id: int = claims["sub"]
        self._principal: Principal | None = None
        self._unseen: Any = None  # the account loaded, its sign of life not written yet

    def load(self) -> Principal:
        if self._principal is None:
            self._principal = self._judged(_ACCOUNTS[self.kind][0](self.id))
        return self._principal

    def _judged(self, account: Any) -> Principal:
        """The principal of ``account`` as ``principal_from_claims`` judges it, its ``last_seen`` left to
        ``seen_once_done``: a deferred caller is loaded inside its write's transaction, and a refused write
        (a finished run's 400) would take the sign of life back with it."""
        principal = _principal_of_account(self.kind, account, self.claims, seen=False)
        self._unseen = account
        return principal

    def seen_once_done(self) -> None:
        """The sign of life of a caller that was loaded, written once its request's work is over, outside
        the work's transaction (whether it committed or not)."""
        if self._unseen is not None:
            account, self._unseen = self._unseen, None
            try:
                _touch_last_seen(account)
            except DatabaseError:
                # The answer stands (a committed update answered with an error would be sent again).
                logger.exception("could not record when %s %s was last seen", self.kind, self.id)

    def load_with(self, lookup: PkLookup[M], pk: int) -> tuple[Principal, M | None, bool]:
        """``load()`` and ``lookup(pk)`` read by one statement (a round trip less), and whether
        ``current_sql`` held in that statement (False where it cannot hold, or was not asked: then both
        were read apart). The caller is judged as ``load`` judges it, from the row that statement read."""
        login = self.current_sql()
        if login is None:
            return self.load(), lookup(pk), False
        row, account, held = lookup.with_other(pk, _ACCOUNTS[self.kind][0], self.id, login)
        self._principal = self._judged(account)
        return self._principal, row, held

    def current_sql(self) -> Statement | None:
        """The token's check (``check_current``) as an SQL condition; None where it cannot hold."""
        return current_login_sql(self.id, self.claims)

    def organization_sql(self) -> Statement:
        """The caller's organization as a scalar subquery, for what a statement that checks the caller
        itself records of it (its audit record's organization)."""
        meta = _ACCOUNTS[self.kind][0].model._meta
        quote = connection.ops.quote_name
        organization = quote(meta.get_field("organization").column)
        table, key = quote(meta.db_table), quote(meta.pk.column)
        return f"SELECT {organization} FROM {table} WHERE {key} = %s", [self.id]

    def seen(self) -> None:
        """A statement found the caller current: the sign of life that loading it gives."""
        _touch_last_seen_unloaded(self.id)


def loaded(caller: Principal | DeferredCaller) -> Principal:
    """The principal of a request's caller, loaded now if it was deferred."""
    return caller.load() if isinstance(caller, DeferredCaller) else caller


class JWTAuthentication(BaseAuthentication):
    """Access tokens only; refresh tokens are accepted by the refresh endpoint alone."""

    accept_refresh = False

    def claims(self, request: Request) -> dict | None:
        """The verified claims of the request's token, of the type this authentication takes."""
        raw = bearer_token(request)
        if raw is None:
            return None
        try:
            claims = _checked_claims(request, raw)
        except TokenError as exc:
            raise ApiError(exc.status, exc.msg) from None
        if claims.get("type") == "refresh" and not self.accept_refresh:
            raise ApiError(422, "Only non-refresh tokens are allowed")
        if claims.get("type") != "refresh" and self.accept_refresh:
            raise ApiError(422, "Only refresh tokens are allowed")
        return claims

    def authenticate(self, request: Request) -> tuple[Principal | DeferredCaller, dict] | None:
        claims = self.claims(request)
        return None if claims is None else (principal_from_claims(claims), claims)

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class RefreshJWTAuthentication(JWTAuthentication):
    accept_refresh = True


class DeferredJWTAuthentication(JWTAuthentication):
    """``JWTAuthentication`` whose user or node is loaded at its first use (``DeferredCaller``), for the
    actions whose write can check the caller itself."""

    def authenticate(self, request: Request) -> tuple[Principal | DeferredCaller, dict] | None:
        claims = self.claims(request)
        if claims is None:
            return None
        if claims.get("client_type") in _ACCOUNTS and type(claims["sub"]) is int:
            return DeferredCaller(claims), claims
        return principal_from_claims(claims), claims
