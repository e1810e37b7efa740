"""The RabbitMQ channel layer, made safe for callers that get cancelled while the broker is away."""

from __future__ import annotations

import asyncio

from channels_rabbitmq import core


class RabbitmqChannelLayer(core.RabbitmqChannelLayer):
    """Every layer call awaits one shared future of the broker connection; a caller cancelled while it
    waits (a client that left, a publish given up on) would cancel that future too, and the layer would
    never connect again. Each caller awaits a shield of it instead."""

    @property
    def carehare_connection(self) -> asyncio.Future:
        return asyncio.shield(super().carehare_connection)
