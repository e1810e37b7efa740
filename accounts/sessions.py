"""Logins of users and nodes: starting one, refreshing it with single-use refresh tokens, ending it.

Every token of a login carries the login's id (``sid``) and the identity's token generation
(``gen``). Access tokens are checked against the caller's row, loaded anyway (``revoked_logins``,
``token_generation``); a refresh token must be the login's current one. Presenting a refresh token
that was already used ends the whole login: one of its two holders is not its owner.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from accounts.audit import audit
from accounts.models import Authenticatable, LoginSession, Role
from accounts.permissions import Principal
from accounts.tokens import login_tokens
from vantage6.api.errors import ApiError
from vantage6.api.sql import Statement, joined

TOKEN_REVOKED = "Token has been revoked"
# A refresh token replaced this recently still works: the official clients refresh from several threads
# (a node's refresh thread, and every thread whose request gets an error answer), each with the token
# it read, so a slow one may present a token replaced twice or more since; each must keep a usable one.
REUSE_LEEWAY = timedelta(seconds=30)
# The most replaced refresh tokens a login keeps within the leeway (a client refreshing in a loop).
REPLACED_KEPT = 32


# Sent once per ending with ``identity_id`` and ``logins`` (the ended logins' ids, or None for all of
# them), within the transaction that ends them: for those who act on it at once, such as live sockets.
logins_ended = Signal()


class TokenRevoked(ApiError):
    """A well-formed token of a login that was ended."""

    def __init__(self) -> None:
        super().__init__(401, TOKEN_REVOKED)


def _roles(identity_id: int, client_type: str) -> list[str]:
    """The ``roles`` claim: the names of a user's roles (none for nodes)."""
    if client_type != "user":
        return []
    return list(Role.objects.filter(users=identity_id).values_list("name", flat=True))


def start_login(identity: Authenticatable, client_type: str) -> tuple[str, str]:
    """A new login of a user or node (as loaded, with its token generation): its token pair."""
    now = timezone.now()
    identity_id = identity.pk
    ends = now + settings.SESSION_MAX_LIFETIME if client_type == "user" else None
    _clear_spent(identity_id, now)
    session = LoginSession.objects.create(
        id=uuid.uuid4().hex, identity_id=identity_id, refresh_jti=uuid.uuid4().hex, expires_at=ends
    )
    _known(identity_id, session.id)
    return login_tokens(
        identity_id,
        client_type,
        _roles(identity_id, client_type),
        generation=identity.token_generation,
        session_id=session.id,
        refresh_jti=session.refresh_jti,
        ends=ends,
    )


def _clear_spent(identity_id: int, now: datetime) -> None:
    """Delete the logins of an identity none of whose tokens can still be valid: past their end, or
    ended, or unused, for longer than a refresh token lives."""
    stale = now - settings.REFRESH_TOKEN_LIFETIME
    LoginSession.objects.filter(
        Q(expires_at__lte=now)
        | Q(revoked_at__lte=stale)
        | Q(rotated_at__lte=stale)
        | Q(rotated_at__isnull=True, created_at__lte=stale),
        identity_id=identity_id,
    ).delete()


def refresh_login(principal: Principal, claims: dict) -> tuple[str, str]:
    """The next token pair of the login of a verified refresh token; the token itself is used up.

    A refresh token used before ends the login (TokenRevoked), unless it was replaced within
    REUSE_LEEWAY (however many times the login was refreshed since): then the answer repeats the
    current refresh token's id, so whichever pair the client keeps stays usable.
    """
    now = timezone.now()
    sid, jti = claims.get("sid"), claims.get("jti")
    live = LoginSession.objects.filter(pk=sid, identity_id=principal.id, revoked_at__isnull=True)
    session = live.first() if isinstance(sid, str) and isinstance(jti, str) else None
    if session is None or (session.expires_at is not None and session.expires_at <= now):
        raise TokenRevoked
    next_jti = uuid.uuid4().hex
    # Compared and set on the current token: a rotation in between fails this one, and the list read
    # with the session is the one this rotation replaces.
    replaced = {**_recently_replaced(session, now), cast(str, jti): now.timestamp()}  # a str: checked above
    kept = dict(sorted(replaced.items(), key=lambda item: item[1])[-REPLACED_KEPT:])
    rotated = live.filter(refresh_jti=jti).update(refresh_jti=next_jti, replaced_jtis=kept, rotated_at=now)
    if not rotated:
        session.refresh_from_db()
        if session.revoked_at is not None or jti not in _recently_replaced(session, now):
            _revoke_reused(principal, session)
            raise TokenRevoked
        next_jti = session.refresh_jti
    identity_id = cast(int, principal.id)  # a user or node: refresh tokens are theirs
    return login_tokens(
        identity_id,
        principal.kind,
        _roles(identity_id, principal.kind),
        generation=claims["gen"],
        session_id=session.id,
        refresh_jti=next_jti,
        ends=session.expires_at,
    )


def _recently_replaced(session: LoginSession, now: datetime) -> dict[str, float]:
    """The refresh tokens of ``session`` replaced within REUSE_LEEWAY of ``now``."""
    since = (now - REUSE_LEEWAY).timestamp()
    replaced = session.replaced_jtis if isinstance(session.replaced_jtis, dict) else {}
    return {jti: when for jti, when in replaced.items() if isinstance(when, float | int) and when >= since}


@transaction.atomic
def _revoke_reused(principal: Principal, session: LoginSession) -> None:
    live = LoginSession.objects.filter(pk=session.pk, revoked_at__isnull=True)
    if live.update(revoked_at=timezone.now()):
        # Its sockets (a thief's among them) end now, as at a logout, not at the next heartbeat round.
        logins_ended.send(sender=None, identity_id=principal.id, logins=[session.pk])
        audit(principal, "token.reuse_revoked", principal.user or principal.node, login=session.pk)


@transaction.atomic
def end_login(principal: Principal, claims: dict) -> None:
    """Log out: the login of this token ends (its other tokens stop working too)."""
    sessions = LoginSession.objects.filter(pk=claims.get("sid"), identity_id=principal.id)
    sessions.update(revoked_at=timezone.now())
    logins_ended.send(sender=None, identity_id=principal.id, logins=[claims.get("sid")])
    audit(principal, "token.revoke", principal.user or principal.node, login=claims.get("sid"))


def end_all_logins(identity_id: int) -> None:
    """Every token of a user or node stops working (password change or reset, new API key, logout
    everywhere, deletion); the caller audits the action that asked for it."""
    Authenticatable.objects.filter(pk=identity_id).update(token_generation=F("token_generation") + 1)
    LoginSession.objects.filter(identity_id=identity_id).delete()
    logins_ended.send(sender=None, identity_id=identity_id, logins=None)


def end_other_logins(identity_id: int, keep: str | None) -> None:
    """Every login of a user or node but ``keep`` (the caller's) ends, its sockets with it (one signal
    for them all: their sockets are checked again in one go); the caller audits the action that asked
    for it."""
    others = LoginSession.objects.filter(identity_id=identity_id, revoked_at__isnull=True).exclude(pk=keep)
    ended = list(others.values_list("pk", flat=True))
    if ended:
        LoginSession.objects.filter(pk__in=ended).update(revoked_at=timezone.now())
        logins_ended.send(sender=None, identity_id=identity_id, logins=ended)


@transaction.atomic
def end_all_logins_of(principal: Principal) -> None:
    end_all_logins(cast(int, principal.id))
    audit(principal, "token.revoke_all", principal.user or principal.node)


def with_revoked_logins(queryset: QuerySet) -> QuerySet:
    """Users or nodes annotated with ``revoked_logins``: the ids of their ended logins whose tokens
    may not have expired yet, so the caller's check costs no query of its own."""
    ended = LoginSession.objects.filter(identity_id=OuterRef("pk"), revoked_at__isnull=False)
    return queryset.annotate(revoked_logins=joined(ended, "id"))


# The logins (identity id, sid) this process started or found in the database. A login is only ever
# deleted when its tokens can no longer be valid (expired, or the identity's generation changed), and
# its end shows in ``revoked_logins``: so it is looked up once per process, not on every request.
_known_logins: set[tuple[int, str]] = set()
KNOWN_LOGINS_KEPT = 65536


def check_current(identity: Authenticatable, claims: dict) -> None:
    """TokenRevoked unless ``claims`` belong to a login of ``identity`` that this server started and
    has not ended (a token signed elsewhere with the same key, or kept across a restored database,
    names a login this server does not know)."""
    revoked = (getattr(identity, "revoked_logins", None) or "").split(",")
    sid = claims.get("sid")
    if claims.get("gen") != identity.token_generation or not isinstance(sid, str) or sid in revoked:
        raise TokenRevoked
    if (identity.pk, sid) not in _known_logins:
        if not LoginSession.objects.filter(pk=sid, identity_id=identity.pk, revoked_at__isnull=True).exists():
            raise TokenRevoked
        _known(identity.pk, sid)


# The largest token generation a token can carry (the column's range): the SQL form of the check
# compares it as a parameter.
MAX_GENERATION = 2**31 - 1


def current_login_sql(identity_id: int, claims: dict) -> Statement | None:
    """``check_current`` as an SQL condition, for a write that checks its caller in its own statement
    (no lookup of the caller before it): the identity ``identity_id`` has the token's generation, and
    the token's ``sid`` is a login of it that has not ended. The same rule: a login is only ever deleted
    when its tokens can no longer be valid, so where ``check_current`` passes this holds, and where it
    is stricter (a login deleted since this process saw it) the caller is loaded and judged by
    ``check_current``. None where the claims cannot name a current login."""
    generation, sid = claims.get("gen"), claims.get("sid")
    if type(generation) is not int or not 0 <= generation <= MAX_GENERATION or not isinstance(sid, str):
        return None
    return _current_login_text(), [identity_id, generation, sid]


_current_login_texts: dict[str, str] = {}


def _current_login_text() -> str:
    """The text of ``current_login_sql``'s condition, written once per database backend."""
    text = _current_login_texts.get(connection.vendor)
    if text is None:
        identity, login = Authenticatable._meta, LoginSession._meta

        def quote(name: str | None) -> str:
            return connection.ops.quote_name(cast(str, name))

        identity_id = f"v6_identity.{quote(identity.pk.column)}"
        generation = quote(identity.get_field("token_generation").column)
        login_identity = quote(login.get_field("identity").column)
        revoked_at = quote(login.get_field("revoked_at").column)
        text = _current_login_texts[connection.vendor] = (
            f"EXISTS (SELECT 1 FROM {quote(identity.db_table)} v6_identity WHERE {identity_id} = %s"
            f" AND v6_identity.{generation} = %s AND EXISTS (SELECT 1 FROM {quote(login.db_table)} v6_login"
            f" WHERE v6_login.{quote(login.pk.column)} = %s AND v6_login.{login_identity} = {identity_id}"
            f" AND v6_login.{revoked_at} IS NULL))"
        )
    return text


def _known(identity_id: int, sid: str) -> None:
    if len(_known_logins) >= KNOWN_LOGINS_KEPT:
        _known_logins.clear()
    _known_logins.add((identity_id, sid))
