"""The RabbitMQ channel layer, made safe for callers that get cancelled while the broker is away, with a
publish that does not wait for the broker's confirm."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import carehare
from channels_rabbitmq import core
from channels_rabbitmq.util import GroupRecipient, serialize_message

logger = logging.getLogger(__name__)


class RabbitmqChannelLayer(core.RabbitmqChannelLayer):
    """Every layer call awaits one shared future of the broker connection; a caller cancelled while it
    waits (a client that left, a publish given up on) would cancel that future too, and the layer would
    never connect again. Each caller awaits a shield of it instead."""

    @property
    def carehare_connection(self) -> asyncio.Future:
        return asyncio.shield(super().carehare_connection)

    def publish_soon(self, group: str, message: dict) -> bool:
        """``group_send`` written to the broker now, without waiting for its confirm (a refusal is
        logged when it comes); False when the layer has no broker connection at the moment."""
        connected = self._carehare_connection
        if self._want_close or not connected.done() or connected.cancelled() or connected.exception():
            return False
        body = serialize_message(GroupRecipient(group), message)
        try:
            confirm = connected.result().publish(body, exchange_name=self.groups_exchange, routing_key=group)
        except carehare.ConnectionClosed:
            return False
        confirm.add_done_callback(partial(_confirmed, group))
        return True


def _confirmed(group: str, confirm: asyncio.Future) -> None:
    if not confirm.cancelled() and (exc := confirm.exception()) is not None:
        logger.warning("a publish to group %s was not confirmed by the broker: %r", group, exc)
