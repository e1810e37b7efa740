"""Sending Socket.IO events to rooms, from anywhere in the server (views, services, commands).

This is the one interface through which REST actions notify nodes and users. An event is sent
after the current database transaction commits, so a node never hears of a task it cannot read yet.
Every event also fires the ``event_emitted`` signal, which tests use to assert what was sent.
"""

from __future__ import annotations

import logging

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
