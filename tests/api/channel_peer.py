"""A second OS process on the configured channel layer: joins a group, answers one ping, exits.

Run as ``python -m tests.api.channel_peer <group>``; prints ``ready`` once it has joined.
"""

from __future__ import annotations

import asyncio
import os
import sys

import django


async def answer_one_ping(group: str) -> None:
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    # Built inside the running loop: the RabbitMQ layer is bound to the loop it is created on.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    channel = await layer.new_channel()
    try:
        await layer.group_add(group, channel)
        print("ready", flush=True)
        message = await asyncio.wait_for(layer.receive(channel), timeout=30)
        await layer.send(message["reply_to"], {"type": "pong", "pid": os.getpid(), "text": message["text"]})
        await layer.group_discard(group, channel)
    finally:
        await layer.close()


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
    django.setup()
    asyncio.run(answer_one_ping(sys.argv[1]))
