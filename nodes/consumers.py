"""The vantage6 events of namespace ``/tasks``: who joins which rooms, and what nodes report.

A socket is identified by the access token of its handshake's ``Authorization`` header. Connections
are always accepted; a socket without a usable token just never joins a room (and its session is never
stored in the database: see vantage6.socketio.local).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import timedelta
from typing import cast

import jwt
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.authentication import principal_from_claims
from accounts.models import Authenticatable, AuthStatus
from accounts.permissions import COL, GLO, ORG, Principal
from accounts.sessions import TokenRevoked, check_current, with_revoked_logins
from accounts.tokens import TokenError, decode
from collaborations.models import Collaboration
from nodes.events import (
    ALL_NODES_ROOM,
    TASKS_NAMESPACE,
    collaboration_room,
    housekeeping_jobs,
    node_reports,
    organization_room,
    presence_room,
)
from nodes.models import NodeConfig, NodeMetrics, SocketConnection
from nodes.services import node_metrics_store
from nodes.socket_store import DatabaseSessionStore
from vantage6.api.errors import ApiError
from vantage6.socketio.server import Namespace, Server, Socket
from vantage6.socketio.store import Session

logger = logging.getLogger(__name__)

NODE_EVENTS = {"algorithm_status_change", "algorithm_log", "node_info_update", "node_metrics_update"}


# --- identification ------------------------------------------------------------------------------------
# What a session keeps of a token: its verified claims are no credential without the signature.
KEPT_CLAIMS = ("sub", "client_type", "type", "jti", "iat", "exp", "gen", "sid")


def handshake_auth(headers: dict[str, str]) -> tuple[dict, bool]:
    """What a session keeps of its handshake's ``Authorization`` header, and whether the client is
    authenticated (only then is its session stored in the database): the kept claims of a valid access
    token of a user or node; else the event that tells the client its token is unusable, if any."""
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
    # The token of an ended login gets no session in the database.
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


def revoke_sockets(identity_id: int, login: str | None, **_kwargs: object) -> None:
    """Receiver of ``logins_ended``: after the commit, the sockets of the ended logins are told
    (``invalid_token``) and lose their identity and rooms, on whichever instance they are."""

    def revoke() -> None:
        owners = [f"{kind}:{identity_id}" for kind in ("user", "node")]
        ended = [
            session
            for session in server.store.owned(owners=owners)
            if login is None or session.auth.get("claims", {}).get("sid") == login
        ]
        try:
            if ended:
                # Within the request that ended the logins: a broker that is away must not hold it.
                server.run_sync(lambda: _revoke_all(ended), timeout=server.publish_timeout)
        except TimeoutError:
            logger.warning("the sockets of identity %s are revoked in the background", identity_id)
        except Exception:
            # The logins have ended already; the next sweep finds the sockets that were missed.
            logger.exception("could not revoke the sockets of identity %s", identity_id)

    transaction.on_commit(revoke)


async def _revoke_all(sessions: list[Session]) -> None:
    for session in sessions:
        await server.revoke(session, "invalid_token")


def identify(auth: dict) -> dict | str | None:
    """The identity a session's handshake authenticated (see ``handshake_auth``), marked online: a dict
    (``kind``, ``id``, ``name``, ``rooms``, and for nodes ``org_id``, ``collaboration_id``); or the event
    that tells the client its token is unusable (``expired_token``, ``invalid_token``); or None."""
    claims = auth.get("claims")
    if claims is None:
        return auth.get("event")
    if claims["exp"] <= time.time():  # expired since the handshake
        return "expired_token"
    try:
        principal = principal_from_claims(claims, seen=False)
    except TokenRevoked:  # ended since the handshake
        return "invalid_token"
    except ApiError:
        return None
    generation = connected(cast(int, principal.id))  # a user or a node: handshake_auth lets no other in
    if principal.is_node:
        node = principal.node
        return {
            "kind": "node",
            "id": node.pk,
            "name": node.name,
            "org_id": node.organization_id,
            "collaboration_id": node.collaboration_id,
            "rooms": node_rooms(node.organization_id, node.collaboration_id),
            "generation": generation,
        }
    return {
        "kind": "user",
        "id": principal.id,
        "name": principal.user.username,
        "rooms": user_rooms(principal),
        "generation": generation,
    }


def connected(identity_id: int) -> str:
    """Mark an identity online with a new connection generation, which it returns."""
    generation = secrets.token_hex(16)
    # Online, but not "seen": only REST calls and ping heartbeats set last_seen.
    Authenticatable.objects.filter(pk=identity_id).update(status=AuthStatus.ONLINE)
    SocketConnection.objects.bulk_create(
        [SocketConnection(identity_id=identity_id, generation=generation)],
        update_conflicts=True,
        unique_fields=["identity"],
        update_fields=["generation"],
    )
    return generation


def node_rooms(organization_id: int, collaboration_id: int | None) -> list[str]:
    if collaboration_id is None:
        return [ALL_NODES_ROOM]
    return [
        ALL_NODES_ROOM,
        collaboration_room(collaboration_id),
        organization_room(collaboration_id, organization_id),
    ]


def user_rooms(principal: Principal) -> list[str]:
    """Rooms by the user's broadest ``event`` receive rule (permissions.md §5.7)."""
    scope = principal.max_scope("event", "receive")
    if scope == GLO:
        return [
            collaboration_room(cid)
            for cid in Collaboration.objects.order_by("id").values_list("id", flat=True)
        ]
    own = sorted(principal.collaboration_ids)
    if scope == COL:
        return [collaboration_room(cid) for cid in own]
    if scope == ORG:
        return [organization_room(cid, principal.organization_id) for cid in own]
    return []


# --- node reports ---------------------------------------------------------------------------------------
def _config_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def config_rows(config: dict) -> list[tuple[str, str]]:
    """(key, value) rows of a shared node configuration: lists give a row per item, an object's inner
    keys become keys."""
    rows = []
    for key, value in config.items():
        entries = value.items() if isinstance(value, dict) else [(key, value)]
        for entry_key, entry in entries:
            for item in entry if isinstance(entry, list) else [entry]:
                rows.append((str(entry_key)[:256], _config_text(item)))
    return rows


@transaction.atomic
def store_config(node_id: int, config: object) -> bool:
    """Replace the configuration a node shares (``node_info_update``)."""
    if not isinstance(config, dict):
        return False
    NodeConfig.objects.filter(node_id=node_id).delete()
    NodeConfig.objects.bulk_create(
        NodeConfig(node_id=node_id, key=key, value=value) for key, value in config_rows(config)
    )
    return True


def heartbeat(identity_id: int) -> None:
    Authenticatable.objects.filter(pk=identity_id).update(status=AuthStatus.ONLINE, last_seen=timezone.now())


@transaction.atomic
def went_offline(identity: dict) -> bool:
    """Mark an identity offline unless it connected again since (a newer generation); whether it did."""
    rows = Authenticatable.objects.filter(pk=identity["id"])
    if "generation" in identity:
        rows = rows.filter(socket_connection__generation=identity["generation"])
    if not rows.update(status=AuthStatus.OFFLINE):
        return False
    if identity["kind"] == "node":
        NodeConfig.objects.filter(node_id=identity["id"]).delete()
        NodeMetrics.objects.filter(node_id=identity["id"]).delete()
    return True


def node_sweep_period() -> float:
    return settings.NODE_HEARTBEAT_TIMEOUT / 20


def mark_silent_nodes_offline() -> int:
    """Nodes whose last heartbeat is older than the timeout become offline; how many did.

    Run every ``node_sweep_period()`` seconds, this marks a node offline at most
    ``NODE_HEARTBEAT_TIMEOUT`` seconds after its last heartbeat, on whichever instance it was connected.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT - node_sweep_period())
    silent = Authenticatable.objects.filter(type="node", status=AuthStatus.ONLINE, last_seen__lt=cutoff)
    # Look before writing: most sweeps find nothing, and a write (even of no row) takes a lock.
    return silent.update(status=AuthStatus.OFFLINE) if silent.exists() else 0


# --- the namespace ---------------------------------------------------------------------------------------
def _notice(identity: dict, verb: str, room: str) -> str:
    return f"{identity['name']} {verb} room {room}"


def _node_notice(identity: dict) -> dict:
    return {"id": identity["id"], "name": identity["name"], "org_id": identity["org_id"]}


async def _tell_users(socket: Socket, event: str, data: object, rooms: list[str]) -> None:
    """Send a presence notice to the user sockets of ``rooms`` (no user is in ``all_nodes``)."""
    for room in rooms:
        if room != ALL_NODES_ROOM:
            await socket.server.emit(event, data, room=presence_room(room), namespace=TASKS_NAMESPACE)


class TasksNamespace(Namespace):
    """Presence notices go to the user sockets of a room (``presence_room``), plus the joiner's own
    ``message``: nodes do not act on the presence of others, and sending it to them would cost
    every connect O(N) frames."""

    async def on_connect(self, socket: Socket) -> None:
        identity = await database_sync_to_async(identify)(socket.auth)
        if isinstance(identity, str):
            await socket.emit(identity)
            return
        if identity is None:
            logger.info("socket %s connected without a usable token", socket.sid)
            return
        socket.state.update(identity)
        socket.set_owner(f"{identity['kind']}:{identity['id']}")
        rooms = identity["rooms"]
        node = identity["kind"] == "node"
        if node:
            # Rooms before ``sync``: a task made after the node's listing on ``sync`` reaches it as an event.
            for room in rooms:
                await socket.join(room)
            await socket.emit("sync")
            await _tell_users(socket, "node-online", _node_notice(identity), rooms)
        for room in rooms:
            if not node:
                await socket.join(room)
            if room != ALL_NODES_ROOM:
                notice = _notice(identity, "joined", room)
                await _tell_users(socket, "message", notice, [room])
                await socket.emit("message", notice)
            if not node:
                await socket.join(presence_room(room))

    async def on_disconnect(self, socket: Socket) -> None:
        identity = socket.state
        if "kind" not in identity:
            return
        if identity["kind"] == "node" and socket.server.stopping:
            # Its next connection, to another process, follows at once (one that never comes is found
            # by the heartbeat sweep): notices now would only make the UI flap.
            return
        for room in identity["rooms"]:
            await socket.leave(room)
            if identity["kind"] == "user":
                await socket.leave(presence_room(room))
            if room != ALL_NODES_ROOM:
                await _tell_users(socket, "message", _notice(identity, "left", room), [room])
        owner = socket.session.owner
        if await database_sync_to_async(socket.server.store.has_owner)(owner, besides=socket.session.sid):
            return  # still connected through another session (e.g. reconnected before this one timed out)
        if await database_sync_to_async(went_offline)(identity) and identity["kind"] == "node":
            await _tell_users(socket, "node-offline", _node_notice(identity), identity["rooms"])

    async def on_event(self, socket: Socket, event: str, args: list) -> None:
        identity = socket.state
        data = args[0] if args else None
        if event in ("message", "error"):
            logger.info("socket %s sent %s: %s", socket.sid, event, data)
        elif "kind" not in identity:
            logger.info("unidentified socket %s sent %s; ignored", socket.sid, event)
        elif event == "ping":
            await database_sync_to_async(heartbeat)(identity["id"])
        elif event not in NODE_EVENTS:
            logger.info("socket %s sent unknown event %s; ignored", socket.sid, event)
        elif identity["kind"] != "node":
            logger.warning("%s %s sent node event %s; ignored", identity["kind"], identity["id"], event)
        else:
            await self._node_event(socket, identity, event, data)

    async def _node_event(self, socket: Socket, node: dict, event: str, data: object) -> None:
        if event == "node_info_update":
            if not await database_sync_to_async(store_config)(node["id"], data):
                logger.warning("node %s sent a configuration that is not an object", node["id"])
            return
        if event == "node_metrics_update":
            if ignored := await database_sync_to_async(node_metrics_store)(node["id"], data):
                logger.info("node %s sent metrics that are not kept: %s", node["id"], ", ".join(ignored))
            return
        relay = node_reports.get(event)
        if relay is None:
            logger.warning("node %s sent %s, which nothing here takes; ignored", node["id"], event)
            return
        message = await database_sync_to_async(relay)(node, data)
        if message is None:
            logger.warning("node %s sent %s about a run that is not its own; ignored", node["id"], event)
            return
        await socket.server.emit(
            event, message, room=collaboration_room(node["collaboration_id"]), namespace=TASKS_NAMESPACE
        )


async def resync_nodes() -> None:
    """Every node socket held here hears ``sync``: events published while the channel layer had no
    broker may be lost, and on ``sync`` a node fetches its open work."""
    for sink in list(server.local_websockets.values()):
        entry = sink.session.namespaces.get(TASKS_NAMESPACE)
        if entry is not None and entry["state"].get("kind") == "node":
            await Socket(server, sink.session, TASKS_NAMESPACE, sink).emit("sync")


async def _housekeeping() -> None:
    await database_sync_to_async(mark_silent_nodes_offline)()
    for job in housekeeping_jobs:
        await database_sync_to_async(job)()


server = Server(
    namespaces={TASKS_NAMESPACE: TasksNamespace()},
    store=DatabaseSessionStore(),
    ping_interval=settings.SOCKET_PING_INTERVAL,
    ping_timeout=settings.SOCKET_PING_TIMEOUT,
    authenticate=handshake_auth,
    verify=ended_sessions,
    secret=settings.SECRET_KEY.encode(),
    cors_allowed_origins=tuple(settings.CORS_ALLOWED_ORIGINS),
    housekeeping=_housekeeping,
    housekeeping_interval=node_sweep_period(),
    layer_reconnected=resync_nodes,
)
