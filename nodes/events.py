"""Sending Socket.IO events to rooms, from anywhere in the server (views, services, commands).

This is the one interface through which REST actions notify nodes and users. An event is sent
after the current database transaction commits, so a node never hears of a task it cannot read yet.
Every event also fires the ``event_emitted`` signal, which tests use to assert what was sent.

It is also where other apps hook into the socket layer at start-up: ``on_node_report`` takes what a
node reports about its runs, ``on_housekeeping`` adds periodic work; ``nodes`` knows nothing of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

TASKS_NAMESPACE = "/tasks"

# Sent with keyword arguments event, data, room, namespace.
event_emitted = Signal()


def collaboration_room(collaboration_id: int) -> str:
    return f"collaboration_{collaboration_id}"


def organization_room(collaboration_id: int, organization_id: int) -> str:
    return f"collaboration_{collaboration_id}_organization_{organization_id}"


ALL_NODES_ROOM = "all_nodes"


def presence_room(room: str) -> str:
    """Where the presence notices of ``room`` go (``node-online``/``node-offline``, join/leave
    ``message``): its user sockets only, the ones that use them."""
    return f"presence.{room}"


def emit(event: str, data: object = None, *, room: str, namespace: str = TASKS_NAMESPACE) -> None:
    """Send ``event`` with ``data`` to every socket in ``room`` on every server instance."""

    def send() -> None:
        from nodes.consumers import server

        event_emitted.send(sender=None, event=event, data=data, room=room, namespace=namespace)
        try:
            server.publish(event, data, room=room, namespace=namespace)
        except Exception:
            # The change is committed already; a lost notice must not turn it into an error.
            logger.exception("could not deliver event %s to room %s", event, room)

    transaction.on_commit(send)


# --- hooks of other apps ----------------------------------------------------------------------------------
NodeReport = Callable[[dict, object], dict | None]
"""From the reporting node (``id``, ``org_id``, ``collaboration_id``) and the event's data: the event to
relay to the node's collaboration room, or None to drop a report about something not the node's (or
not valid).
Runs in a thread: it may use the database."""

LoopNodeReport = Callable[[dict, object], Awaitable[tuple[bool, dict | None]]]
"""A ``NodeReport`` that reads on the event loop's thread (``vantage6.db.LoopReader``): (True, what the
``NodeReport`` answers), or (False, None) where it could not read there; the ``NodeReport`` runs then."""

node_reports: dict[str, NodeReport] = {}
node_reports_on_loop: dict[str, LoopNodeReport] = {}
housekeeping_jobs: list[Callable[[], object]] = []


def on_node_report(event: str, handler: NodeReport, *, on_loop: LoopNodeReport | None = None) -> None:
    """Let ``handler`` take the node event ``event`` (e.g. ``algorithm_status_change``); ``on_loop``
    first, where given (a read that does not write: it needs no transaction)."""
    node_reports[event] = handler
    if on_loop is not None:
        node_reports_on_loop[event] = on_loop


def on_housekeeping(job: Callable[[], object]) -> None:
    """Run ``job`` (synchronous, may use the database) in every server process's periodic round."""
    if job not in housekeeping_jobs:
        housekeeping_jobs.append(job)
