"""The vantage6 events of namespace ``/tasks``: who joins which rooms, and what nodes report.

A socket is identified by the access token of its handshake's ``Authorization`` header. Connections
are always accepted; a socket without a usable token just never joins a room, and its session ends
pingInterval + pingTimeout after its handshake.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Collection, Iterable, Iterator
from datetime import timedelta

import jwt
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.authentication import principal_from_claims
from accounts.models import Authenticatable, AuthStatus
from accounts.permissions import (
    Principal,
    nodes_with_rules,
    principal_for_node,
    principal_for_user,
    users_reaching_every,
    users_with_rules,
)
from accounts.sessions import TokenRevoked, check_current, with_revoked_logins
from accounts.tokens import TokenError, decode
from nodes.events import (
    ALL_NODES_ROOM,
    TASKS_NAMESPACE,
    collaboration_room,
    housekeeping_jobs,
    node_reports,
    node_reports_on_loop,
    organization_room,
    presence_room,
)
from nodes.models import Node, NodeConfig, NodeMetrics, SocketConnection
from nodes.services import node_metrics_store
from nodes.socket_store import (
    DatabaseLiveness,
    back_to_stopped,
    live_processes,
    next_round_if_rows_held,
    restore_rows,
    went_silent,
)
from vantage6 import layers
from vantage6.api.errors import ApiError
from vantage6.logging import client_text
from vantage6.socketio.database import events, sweeps
from vantage6.socketio.server import Namespace, Server, Socket
from vantage6.socketio.store import Session

logger = logging.getLogger(__name__)

NODE_EVENTS = {"algorithm_status_change", "algorithm_log", "node_info_update", "node_metrics_update"}


# --- identification ------------------------------------------------------------------------------------
# What a session keeps of a token: its verified claims are no credential without the signature.
KEPT_CLAIMS = ("sub", "client_type", "type", "jti", "iat", "exp", "gen", "sid")


def handshake_auth(headers: dict[str, str]) -> tuple[dict, bool]:
    """What a session keeps of its handshake's ``Authorization`` header, and whether the client is
    authenticated (only then may it join rooms and outlive its first ping timeout): the kept claims of
    a valid access token of a user or node; else the event that tells the client its token is
    unusable, if any."""
    parts = (headers.get("authorization") or "").split()
    if len(parts) != 2 or parts[0] != "Bearer":
        return {}, False
    try:
        claims = decode(parts[1])
    except TokenError as exc:
        if exc.status == 401:
            return {"event": "expired_token"}, False
        # decode() hides the cause from tracebacks but keeps it as the context.
        if isinstance(exc.__context__, jwt.InvalidSignatureError):
            return {"event": "invalid_token"}, False
        return {}, False
    if claims.get("type") != "access" or claims.get("client_type") not in ("user", "node"):
        return {}, False
    kept = {key: claims[key] for key in KEPT_CLAIMS if key in claims}
    # The token of an ended login gets no authenticated session.
    if event := token_problem(kept, _identities({kept["sub"]}).get(kept["sub"])):
        return {"event": event}, False
    return {"claims": kept}, True


def _identities(ids: set[object]) -> dict[int, Authenticatable]:
    """Users and nodes by id, with what their tokens are checked against (one query for all)."""
    pks = {pk for pk in ids if isinstance(pk, int) and not isinstance(pk, bool)}
    if not pks:
        return {}
    rows = with_revoked_logins(Authenticatable.objects.filter(pk__in=pks)).only("token_generation")
    return {row.pk: row for row in rows}


def token_problem(claims: dict, identity: Authenticatable | None) -> str | None:
    """The event telling a client that its token is no longer usable (expired; its login ended, or
    its user or node was deleted), or None while the token is good."""
    if claims["exp"] <= time.time():
        return "expired_token"
    if identity is None:
        return "invalid_token"
    try:
        check_current(identity, claims)
    except TokenRevoked:
        # A node whose login ended logs in again with its API key, which a thief does not hold.
        return "invalid_token"
    return None


def ended_sessions(sessions: list[Session]) -> dict[str, str]:
    """By sid, the event for each identified session whose token is no longer usable."""
    claims = {session.sid: session.auth["claims"] for session in sessions if "claims" in session.auth}
    identities = _identities({claim["sub"] for claim in claims.values()})
    return {
        sid: event
        for sid, claim in claims.items()
        if (event := token_problem(claim, identities.get(claim["sub"])))
    }


def revoke_sockets(identity_id: int, **_kwargs: object) -> None:
    """Receiver of ``logins_ended``: the sockets of the identity are checked again after the commit
    (``recheck_after_commit``); those of the ended logins are told (``invalid_token``) and lose their
    identity and rooms."""
    recheck_after_commit([f"{kind}:{identity_id}" for kind in ("user", "node")])


def follow_rights(
    *,
    identities: Iterable[int] = (),
    roles: Iterable[int] = (),
    organizations: Iterable[int] = (),
    collaborations: bool = False,
    **_kwargs: object,
) -> None:
    """Receiver of ``rights_changed``: the sockets of the users and nodes it touches move to the rooms
    they reach now (``recheck_after_commit``). The identities with a connection are looked up after the
    commit, in one query: a socket that connected meanwhile, with the rights before the change, is
    among them. (A deleted role names its holders as ``identities``: it has none after the commit.)"""
    organizations = list(organizations)  # the lookup runs later, and reads it twice
    touched = (
        Q(identity_id__in=list(identities))
        | Q(identity__user__roles__in=list(roles))
        | Q(identity__user__organization_id__in=organizations)
        | Q(identity__node__organization_id__in=organizations)
    )
    if collaborations:
        # A user whose events reach every collaboration is in every collaboration's room.
        touched |= users_reaching_every("event", "receive", through="identity__user__")

    def recheck_connected() -> None:
        connected = SocketConnection.objects.filter(touched).values_list("identity__type", "identity_id")
        if owners := sorted({f"{kind}:{pk}" for kind, pk in connected}):
            recheck_after_commit(owners)  # at once: the commit is done

    # Robust: the change is committed, a failed lookup leaves the sockets as the next change finds them.
    transaction.on_commit(recheck_connected, robust=True)


def recheck_after_commit(owners: list[str]) -> None:
    """After the commit, every server process checks the sockets of ``owners`` (``kind:id``) again: those
    whose login ended are revoked (``ended_sessions``), the others move to the rooms they reach now
    (``TasksNamespace.on_recheck``). The request that made the change is answered once they all did (or
    the bound passed): an event published after its answer no longer reaches a socket that lost its room."""

    def recheck() -> None:
        try:
            # The processes that may hold their sockets: every one alive (in memory, only this one).
            alive = [] if server.in_memory else live_processes(server.beat_lapse)
            # Within the request that made the change: a broker that is away must not hold it, nor a
            # process that does not confirm (publishing, then the confirmations, each within the bound).
            server.run_sync(lambda: server.recheck(owners, alive), timeout=2 * server.publish_timeout)
        except TimeoutError:
            logger.warning("the sockets of %s are checked again in the background", ", ".join(owners))
        except Exception:
            # Ended logins are found by the next heartbeat round; rooms follow the next change or reconnect.
            logger.exception("could not check the sockets of %s again", ", ".join(owners))

    transaction.on_commit(recheck)


def identify(auth: dict, process: str) -> dict | str | None:
    """The identity a session's handshake authenticated (see ``handshake_auth``), marked online with a
    connection held by server ``process``: a dict (``kind``, ``id``, ``name``, ``rooms``,
    ``generation``, and for nodes ``org_id``, ``collaboration_id``); or the event that tells the client
    its token is unusable (``expired_token``, ``invalid_token``); or None."""
    claims = auth.get("claims")
    if claims is None:
        return auth.get("event")
    if claims["exp"] <= time.time():  # expired since the handshake
        return "expired_token"
    # The connection row is written before the rights are read. A change of rights looks the connected
    # sockets up after its commit (``follow_rights``): a lookup after this write finds the row and has the
    # session rechecked (the server does that once its connect is done); a lookup before it follows a
    # commit the read below sees. Read first, a socket could join with rights taken away between its read
    # and its write, and no change would recheck it.
    generation, replaced = connected(claims["sub"], process)
    try:
        identity = _node(claims) if claims["client_type"] == "node" else _user(claims)
        # Online, but not "seen": only REST calls and ping heartbeats set last_seen.
        Authenticatable.objects.filter(pk=identity["id"]).update(status=AuthStatus.ONLINE)
    except (TokenRevoked, ApiError) as exc:  # ended, or deleted, since the handshake
        unconnected(claims["sub"], generation, replaced)
        return "invalid_token" if isinstance(exc, TokenRevoked) else None
    except DatabaseError:
        # The connect is refused (``Server._admit``): no socket holds this connection. Undone where the
        # database still answers (a statement canceled, a lock wait).
        with contextlib.suppress(DatabaseError):
            unconnected(claims["sub"], generation, replaced)
        raise
    identity["generation"] = generation
    return identity


def _nodes() -> QuerySet:
    """Nodes with what their rooms are derived from (``node_place``)."""
    fields = ("name", "organization_id", "collaboration_id", "token_generation")
    return nodes_with_rules(Node.objects.only(*fields))


def _node(claims: dict) -> dict:
    """A node's identity: one query."""
    node = with_revoked_logins(_nodes().filter(pk=claims["sub"])).first()
    if node is None:
        raise TokenRevoked
    check_current(node, claims)
    return {
        "kind": "node",
        "id": node.pk,
        "name": node.name,
        "org_id": node.organization_id,
        **node_place(node),
    }


def node_place(node: Node) -> dict:
    """A node's collaboration, and its rooms: those of the collaboration only while the node's
    organization is a member of it."""
    member = node.collaboration_id in principal_for_node(node).collaboration_ids
    return {
        "collaboration_id": node.collaboration_id,
        "rooms": node_rooms(node.organization_id, node.collaboration_id if member else None),
    }


def _user(claims: dict) -> dict:
    principal = principal_from_claims(claims, seen=False)
    return {
        "kind": "user",
        "id": principal.id,
        "name": principal.user.username,
        "rooms": user_rooms(principal),
    }


def user_rooms(principal: Principal) -> list[str]:
    """The rooms whose events a user receives (its ``event`` rules)."""
    return [
        collaboration_room(cid) if oid is None else organization_room(cid, oid)
        for cid, oid in principal.event_reach("receive")
    ]


def places(kinds: dict[int, str]) -> dict[int, dict]:
    """By id, what the sockets of these users and nodes (id: kind) reach now: their ``rooms``, and a
    node's ``collaboration_id``; one query per kind. A deleted identity is left out."""
    users = [pk for pk, kind in kinds.items() if kind == "user"]
    nodes = [pk for pk, kind in kinds.items() if kind == "node"]
    found = {}
    if users:
        found.update(
            {
                user.pk: {"rooms": user_rooms(principal_for_user(user))}
                for user in users_with_rules().filter(pk__in=users)
            }
        )
    if nodes:
        found.update({node.pk: node_place(node) for node in _nodes().filter(pk__in=nodes)})
    return found


def connected(identity_id: int, process: str) -> tuple[str, tuple[str, str] | None]:
    """Record a new connection of an identity, held by server ``process``: its generation, and the
    (generation, process) of the connection it replaced on record, None if there was none."""
    generation = secrets.token_hex(16)
    rows = SocketConnection.objects.filter(identity_id=identity_id)
    row = SocketConnection(
        identity_id=identity_id, generation=generation, process=process, replaced_generation=""
    )
    while True:
        replaced = rows.values_list("generation", "process").first()
        if replaced is None:
            try:
                row.save(force_insert=True)
                return generation, None
            except IntegrityError:  # a connection of the same identity came first, or the identity is gone
                if (replaced := rows.values_list("generation", "process").first()) is None:
                    return generation, None
        # Replaced only as read: what a refused connect puts back (``unconnected``) is what it replaced.
        if rows.filter(generation=replaced[0]).update(
            generation=generation,
            process=process,
            replaced_generation=replaced[0],
            replaced_process=replaced[1],
        ):
            return generation, replaced


@transaction.atomic
def unconnected(identity_id: int, generation: str, replaced: tuple[str, str] | None) -> None:
    """Undo ``connected`` for a connect that was refused: the connection it replaced is on record again,
    so that its disconnect marks the identity offline. If newer connects replaced this one meanwhile, the
    undo of the last of them is to put back what this one replaced, not this one, which no socket holds."""
    row = SocketConnection.objects.select_for_update().filter(identity_id=identity_id).first()
    if row is None:
        return
    if row.generation == generation:
        if row.replaced_generation is not None:  # a refused connect this one replaced left word here
            replaced = (row.replaced_generation, row.replaced_process) if row.replaced_generation else None
        # What this one replaced may be refused too, its undo done before the chain reached it.
        while replaced is not None and replaced[0] in row.deeper_undos:
            deeper = row.deeper_undos.pop(replaced[0])
            replaced = tuple(deeper) if deeper else None
        if replaced is None:
            row.delete()
            return
        row.generation, row.process = replaced
        row.replaced_generation, row.replaced_process = None, ""
    elif row.replaced_generation == generation:
        row.replaced_generation, row.replaced_process = replaced or ("", "")
    else:  # replaced by two or more connects: kept until the undo of one of them reaches this one
        row.deeper_undos[generation] = replaced
    row.save(
        update_fields=["generation", "process", "replaced_generation", "replaced_process", "deeper_undos"]
    )


def moved(identity: dict, process: str) -> None:
    """The connection ``identity`` (of ``identify``) is held by server ``process`` now."""
    SocketConnection.objects.filter(identity_id=identity["id"], generation=identity["generation"]).update(
        process=process
    )


def node_rooms(organization_id: int, collaboration_id: int | None) -> list[str]:
    if collaboration_id is None:
        return [ALL_NODES_ROOM]
    return [
        ALL_NODES_ROOM,
        collaboration_room(collaboration_id),
        organization_room(collaboration_id, organization_id),
    ]


# --- node reports ---------------------------------------------------------------------------------------
def _config_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# Rows of a node's shared configuration kept. The official node shares a few dozen (more with the columns
# of a wide dataset), in the order of its policies first; every report rewrites them all, on the thread
# that serves the events of every node of the process.
MAX_CONFIG_ROWS = 1000


def config_rows(config: dict) -> Iterator[tuple[str, str]]:
    """(key, value) rows of a shared node configuration: lists give a row per item, an object's inner
    keys become keys."""
    for key, value in config.items():
        entries = value.items() if isinstance(value, dict) else [(key, value)]
        for entry_key, entry in entries:
            for item in entry if isinstance(entry, list) else [entry]:
                yield str(entry_key)[:256], _config_text(item)


@transaction.atomic
def store_config(node_id: int, config: object) -> list[tuple[str, str]] | None:
    """Replace the configuration a node shares (``node_info_update``), up to ``MAX_CONFIG_ROWS`` rows;
    its rows, None if it is no object."""
    if not isinstance(config, dict):
        return None
    rows = list(itertools.islice(config_rows(config), MAX_CONFIG_ROWS + 1))
    if len(rows) > MAX_CONFIG_ROWS:
        del rows[MAX_CONFIG_ROWS:]
        logger.warning(
            "node %s shared more than %d configuration rows: the rest is not kept",
            node_id,
            MAX_CONFIG_ROWS,
        )
    NodeConfig.objects.filter(node_id=node_id).delete()
    NodeConfig.objects.bulk_create(NodeConfig(node_id=node_id, key=key, value=value) for key, value in rows)
    return rows


def heartbeat(identity_id: int) -> bool:
    """A sign of life: the identity is seen, and online; whether this made it online (the heartbeat sweep
    had marked it offline). One query while it is online."""
    now, rows = timezone.now(), Authenticatable.objects.filter(pk=identity_id)
    if rows.filter(status=AuthStatus.ONLINE).update(last_seen=now):
        return False
    return bool(rows.exclude(status=AuthStatus.ONLINE).update(status=AuthStatus.ONLINE, last_seen=now))


@transaction.atomic
def went_offline(identity: dict, stopped: Collection[str] = ()) -> bool:
    """Mark an identity offline unless it connected again since (a newer generation), or its connection
    replaced one held by a process of ``stopped`` (``back_to_stopped``); whether it did. Its connection
    row goes too: a socket of it left on another process restores it (``restore_rows``) and the identity
    is online again."""
    rows = Authenticatable.objects.filter(pk=identity["id"])
    if "generation" in identity:
        if stopped and back_to_stopped(identity["id"], identity["generation"], stopped):
            return False
        rows = rows.filter(socket_connection__generation=identity["generation"])
    if not rows.update(status=AuthStatus.OFFLINE):
        return False
    SocketConnection.objects.filter(identity_id=identity["id"]).delete()
    if identity["kind"] == "node":
        NodeConfig.objects.filter(node_id=identity["id"]).delete()
        NodeMetrics.objects.filter(node_id=identity["id"]).delete()
    return True


def handed_over(identity: dict, successor: str, process: str) -> None:
    """The connection of ``identity`` (of ``identify``), if it is the newest on record, is now that of
    generation ``successor``, another socket of the identity on server ``process``."""
    SocketConnection.objects.filter(identity_id=identity["id"], generation=identity["generation"]).update(
        generation=successor, process=process
    )


def node_sweep_period() -> float:
    return settings.NODE_HEARTBEAT_TIMEOUT / 20


def mark_silent_nodes_offline() -> list[dict]:
    """Nodes whose last heartbeat is older than the timeout become offline: those this call marked
    (``went_silent``), whose users are to hear ``node-offline`` (``tell_offline``).

    Run every ``node_sweep_period()`` seconds, this marks a node offline at most
    ``NODE_HEARTBEAT_TIMEOUT`` seconds after its last heartbeat, on whichever instance it was connected.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT - node_sweep_period())
    silent = Authenticatable.objects.filter(type="node", status=AuthStatus.ONLINE, last_seen__lt=cutoff)
    # Look before writing: most sweeps find nothing, and a write (even of no row) takes a lock.
    if not silent.exists():
        return []
    return next_round_if_rows_held(
        lambda: went_silent(silent),
        [],
        "silent nodes wait for a row held elsewhere; marked offline next round",
    )


# --- the namespace ---------------------------------------------------------------------------------------
def _notice(identity: dict, verb: str, room: str) -> str:
    return f"{identity['name']} {verb} room {room}"


def _node_notice(identity: dict) -> dict:
    return {"id": identity["id"], "name": identity["name"], "org_id": identity["org_id"]}


async def _tell_users(server: Server, event: str, data: object, rooms: list[str]) -> None:
    """Send a presence notice to the user sockets of ``rooms`` (no user is in ``all_nodes``)."""
    for room in rooms:
        if room != ALL_NODES_ROOM:
            await server.emit(event, data, room=presence_room(room), namespace=TASKS_NAMESPACE)


async def _join(socket: Socket, identity: dict, rooms: list[str]) -> None:
    """The socket joins ``rooms``, with the notices; a node is told to ``sync`` (its work there)."""
    node = identity["kind"] == "node"
    # Rooms before ``sync``: a task made after the node's listing on ``sync`` reaches it as an event.
    for room in rooms:
        await socket.join(room)
    if node:
        await socket.emit("sync")
        await _tell_users(socket.server, "node-online", _node_notice(identity), rooms)
    for room in rooms:
        if room != ALL_NODES_ROOM:
            notice = _notice(identity, "joined", room)
            await _tell_users(socket.server, "message", notice, [room])
            await socket.emit("message", notice)
        if not node:
            await socket.join(presence_room(room))


async def _leave(socket: Socket, identity: dict, rooms: list[str]) -> None:
    """The socket leaves ``rooms``, with the notices."""
    for room in rooms:
        await socket.leave(room)
        if identity["kind"] == "user":
            await socket.leave(presence_room(room))
        if room != ALL_NODES_ROOM:
            await _tell_users(socket.server, "message", _notice(identity, "left", room), [room])


def _connected(server: Server) -> Iterator[tuple[Session, dict]]:
    """Each connected socket of this process: its session and identity (``identify``'s state). A socket
    disconnecting, whose session may still be listed, holds no generation (``on_disconnect``)."""
    for session in list(server.sessions.values()):
        entry = session.namespaces.get(TASKS_NAMESPACE)
        if entry is not None and "generation" in entry["state"]:
            yield session, entry["state"]


def _successor(identity: dict, server: Server) -> str | None:
    """The generation of a connected socket of ``identity`` in this process, if any."""
    owner = f"{identity['kind']}:{identity['id']}"
    generations = (state["generation"] for session, state in _connected(server) if session.owner == owner)
    return next(generations, None)


class TasksNamespace(Namespace):
    """Presence notices go to the user sockets of a room (``presence_room``), plus the joiner's own
    ``message``: nodes do not act on the presence of others, and sending it to them would cost
    every connect O(N) frames."""

    async def on_admit(self, socket: Socket) -> None:
        # Before the CONNECT ack: a database outage refuses the connection, and the client comes back.
        identity = await database_sync_to_async(identify)(socket.auth, socket.server.process)
        socket.state.update(identity if isinstance(identity, dict) else {"told": identity})

    async def on_connect(self, socket: Socket) -> None:
        identity = socket.state
        if "kind" not in identity:
            if told := identity.pop("told", None):
                await socket.emit(told)
            else:
                logger.info("socket %s connected without a usable token", socket.sid)
            return
        socket.set_owner(f"{identity['kind']}:{identity['id']}")
        await _join(socket, identity, identity["rooms"])

    async def on_disconnect(self, socket: Socket) -> None:
        identity = socket.state
        if "kind" not in identity:
            return
        if identity["kind"] == "node" and socket.server.stopping:
            # Its next connection, to another process, follows at once (one that never comes is found
            # by the heartbeat sweep): notices now would only make the UI flap.
            return
        # The socket holds its connection no longer: no housekeeping round restores the row for it, and no
        # other disconnect hands the row to it (a session leaving a namespace, or revoked, stays listed).
        leaving = {**identity, "generation": identity.pop("generation")}
        # Not those it never joined: a session that ended while its connect was admitted joined none.
        held = [room for room in leaving["rooms"] if (TASKS_NAMESPACE, room) in socket.session.rooms]
        await _leave(socket, leaving, held)
        if (successor := _successor(leaving, socket.server)) is not None:
            # Another socket of the identity here (another tab, a node's reconnect): it stays online.
            await database_sync_to_async(handed_over)(leaving, successor, socket.server.process)
            return
        # Not if it connected again meanwhile (a newer generation): it lost the race with a quick reconnect.
        # Nor if this socket replaced one that a stopping process dropped (its client gave this connect up
        # and tries again: python-socketio waits 1 s for the ack): that one is on record again, as if
        # this one never came, and goes with its process's burial if the client does not come back.
        stopped = list(socket.server.stopped)
        if await database_sync_to_async(went_offline)(leaving, stopped) and leaving["kind"] == "node":
            await _tell_users(socket.server, "node-offline", _node_notice(leaving), leaving["rooms"])

    async def on_recheck(self, sockets: list[Socket]) -> None:
        """Each socket leaves the rooms its identity no longer reaches (and is told, as it is told
        of those it joins), and joins those it reaches now: one query per kind of identity."""
        identified = [socket for socket in sockets if "kind" in socket.state]
        kinds = {socket.state["id"]: socket.state["kind"] for socket in identified}
        now = await database_sync_to_async(places)(kinds) if kinds else {}
        for socket in identified:
            identity = socket.state
            if (place := now.get(identity["id"])) is None:
                continue  # deleted: its login ended, and verify revoked the socket
            before = identity["rooms"]
            identity.update(place)
            lost = [room for room in before if room not in place["rooms"]]
            await _leave(socket, identity, lost)
            for room in lost:
                if room != ALL_NODES_ROOM:
                    await socket.emit("message", _notice(identity, "left", room))
            if identity["kind"] == "node":
                await _tell_users(socket.server, "node-offline", _node_notice(identity), lost)
            if gained := [room for room in place["rooms"] if room not in before]:
                await _join(socket, identity, gained)

    async def on_move(self, socket: Socket) -> None:
        identity = socket.state
        if "generation" not in identity:  # unidentified, or disconnecting
            return
        await database_sync_to_async(moved)(identity, socket.server.process)
        if identity["kind"] == "node":
            # An event published while the session moved may have missed it: the node fetches its work.
            await socket.emit("sync")

    async def on_event(self, socket: Socket, event: str, args: list) -> None:
        identity = socket.state
        data = args[0] if args else None
        if "kind" not in identity:
            # Anyone can open a socket: what it sends is not worth a line of the log.
            logger.debug("unidentified socket %s sent %s; ignored", socket.sid, client_text(event))
        elif event in ("message", "error"):
            logger.info("socket %s sent %s: %s", socket.sid, event, client_text(data))
        elif event == "ping":
            if await events.run(heartbeat, identity["id"]) and identity["kind"] == "node":
                await _tell_users(socket.server, "node-online", _node_notice(identity), identity["rooms"])
        elif event not in NODE_EVENTS:
            logger.info("socket %s sent unknown event %s; ignored", socket.sid, client_text(event))
        elif identity["kind"] != "node":
            logger.warning("%s %s sent node event %s; ignored", identity["kind"], identity["id"], event)
        else:
            await self._node_event(socket, identity, event, data)

    async def _node_event(self, socket: Socket, node: dict, event: str, data: object) -> None:
        if event == "node_info_update":
            if (rows := await events.run(store_config, node["id"], data)) is None:
                logger.warning("node %s sent a configuration that is not an object", node["id"])
            else:
                # Kept with the socket: if its node goes offline by the close of another socket, on another
                # process, the row this socket restores restores the configuration too (``restore_rows``).
                node["config"] = rows
            return
        if event == "node_metrics_update":
            ignored, kept = await events.run(node_metrics_store, node["id"], data)
            if kept is not None:  # restored with the configuration (``restore_rows``)
                node["metrics"] = kept
            if ignored:
                names = client_text(", ".join(ignored))
                logger.info("node %s sent metrics that are not kept: %s", node["id"], names)
            return
        relay = node_reports.get(event)
        if relay is None:
            logger.warning("node %s sent %s, which nothing here takes; ignored", node["id"], event)
            return
        if collaboration_room(node["collaboration_id"]) not in node["rooms"]:
            # Its organization left the collaboration: the members no longer hear of its runs there.
            logger.warning("node %s sent %s outside its collaboration's rooms; ignored", node["id"], event)
            return
        on_loop = node_reports_on_loop.get(event)
        read, message = await on_loop(node, data) if on_loop is not None else (False, None)
        if not read:
            message = await events.run(relay, node, data)
        if message is None:
            logger.warning("node %s sent %s not valid for a run of its own; ignored", node["id"], event)
            return
        await socket.server.emit(
            event, message, room=collaboration_room(node["collaboration_id"]), namespace=TASKS_NAMESPACE
        )


async def resync_nodes() -> None:
    """Every node socket of this process hears ``sync``: events published while the channel layer had no
    broker may be lost, and a node told of a task while the database was away could not fetch it; on
    ``sync`` a node fetches its open work."""
    for session in list(server.sessions.values()):
        entry = session.namespaces.get(TASKS_NAMESPACE)
        if entry is not None and entry["state"].get("kind") == "node":
            await Socket(server, session, TASKS_NAMESPACE).emit("sync")


_lost_before = 0  # the room messages this process had lost at its last broker reconnect


async def broker_reconnected() -> None:
    """The channel layer has its broker back. The node sockets of this process hear ``sync`` (what other
    processes published meanwhile may be lost). If this process lost room messages meanwhile (more than
    its backlog held, or not confirmed), every node of every process hears it: the others may have kept
    their broker connection, and nothing else tells their nodes of a task whose event went missing."""
    global _lost_before
    if (lost := layers.lost()) != _lost_before:
        _lost_before = lost
        logger.warning("room messages lost while the broker was away: every node is told to sync")
        await server.emit("sync", room=ALL_NODES_ROOM, namespace=TASKS_NAMESPACE)
    else:
        await resync_nodes()


def tell_offline(nodes: list[dict]) -> None:
    """The user sockets of their rooms hear that ``nodes`` (``went_silent``) went offline: those of the
    collaboration's rooms only while their organization is a member (``node_place``)."""
    for node in nodes:
        notice = {"id": node["id"], "name": node["name"], "org_id": node["organization_id"]}
        for room in node_rooms(node["organization_id"], node["collaboration_id"] if node["member"] else None):
            if room != ALL_NODES_ROOM:
                server.publish("node-offline", notice, room=presence_room(room), namespace=TASKS_NAMESPACE)


def _process_lost(nodes: list[dict]) -> None:
    """A server process died. The user sockets of their rooms hear that its nodes are offline, and every
    node syncs: a task the process stored but did not get to publish reaches the nodes of the others."""
    tell_offline(nodes)
    server.publish("sync", room=ALL_NODES_ROOM, namespace=TASKS_NAMESPACE)


async def _restore_connection_rows() -> None:
    """The identities with a socket here keep a connection row (see ``restore_rows``); the sockets of
    those that had lost it are checked again: a change of rights meanwhile did not find them."""
    held = {state["id"]: state for _, state in _connected(server)}
    if not held:
        return
    generations = {pk: state["generation"] for pk, state in held.items()}
    reports = {
        pk: {key: state[key] for key in ("config", "metrics") if key in state} for pk, state in held.items()
    }
    if restored := await database_sync_to_async(restore_rows)(server.process, generations, reports):
        for pk in restored:
            if held[pk]["kind"] == "node":  # its users heard it go offline
                await _tell_users(server, "node-online", _node_notice(held[pk]), held[pk]["rooms"])
        await server.recheck([f"{held[pk]['kind']}:{pk}" for pk in restored])


async def _housekeeping() -> None:
    tell_offline(await sweeps.run(mark_silent_nodes_offline))
    await _restore_connection_rows()
    for job in housekeeping_jobs:
        await database_sync_to_async(job)()


server = Server(
    namespaces={TASKS_NAMESPACE: TasksNamespace()},
    liveness=DatabaseLiveness(process_lost=_process_lost),
    ping_interval=settings.SOCKET_PING_INTERVAL,
    ping_timeout=settings.SOCKET_PING_TIMEOUT,
    packet_rate=settings.SOCKET_PACKET_RATE,
    packet_burst=settings.SOCKET_PACKET_BURST,
    anonymous_per_address=settings.SOCKET_ANONYMOUS_PER_ADDRESS,
    beat_retry=settings.SOCKET_BEAT_RETRY_SECONDS,
    authenticate=handshake_auth,
    # Users and nodes are numbered apart: a user with a node's id is another client.
    client_of=lambda auth: (auth["claims"]["client_type"], auth["claims"]["sub"]),
    max_connected=lambda auth: (
        settings.SOCKET_SESSIONS_PER_NODE
        if auth["claims"]["client_type"] == "node"
        else settings.SOCKET_SESSIONS_PER_USER
    ),
    verify=ended_sessions,
    secret=settings.SECRET_KEY.encode(),
    cors_allowed_origins=tuple(settings.CORS_ALLOWED_ORIGINS),
    trusted_proxies=settings.TRUSTED_PROXIES,
    housekeeping=_housekeeping,
    housekeeping_interval=node_sweep_period(),
    layer_reconnected=broker_reconnected,
    database_reconnected=resync_nodes,
)
