"""A broker that closes the socket during the AMQP handshake without a word (end of file: RabbitMQ stopping or
starting, a proxy with no broker behind it) fails that connect, and the layer tries again: the connect used
to wait forever, and the process never had its broker again."""

from __future__ import annotations

import asyncio
import os

from django.conf import settings

from tests.conftest import requires_services
from tests.realtime.helpers import linked
from vantage6.layers import RabbitmqChannelLayer

pytestmark = requires_services("rabbitmq")


def test_the_layer_connects_once_the_broker_stops_closing_its_handshakes():
    async def deliver(link, uri: str) -> dict:
        layer = RabbitmqChannelLayer(host=uri, **settings.RABBITMQ_LAYER_CONFIG)
        try:
            channel = await layer.new_channel()
            joined = asyncio.ensure_future(layer.group_add("room", channel))
            await asyncio.sleep(0.5)  # its first connect met a socket closed at once
            assert not joined.done()
            link.mend()
            await asyncio.wait_for(joined, 15)
            await layer.group_send("room", {"type": "m", "n": 1})
            return await asyncio.wait_for(layer.receive(channel), 15)
        finally:
            await asyncio.wait_for(layer.close(), 15)  # a connect that waits forever holds the close too

    with linked(os.environ["V6_RABBITMQ_URI"]) as (link, uri):
        link.cut()  # every connection is accepted and closed at once
        assert asyncio.run(deliver(link, uri)) == {"type": "m", "n": 1}
