"""The layer's reconnect closes every connection whose setup it gives up on. While the broker still holds
the process's exclusive queue for a connection cut without its knowing, each setup is refused
(``RESOURCE_LOCKED``; here the queue is held by another connection of the test's) and the reconnect tries
again a second later: channels-rabbitmq dropped each such
connection open, and a process piled up one more broker connection per second of the wait."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from importlib.metadata import version
from pathlib import Path

import carehare
from channels_rabbitmq import core
from django.conf import settings

from tests.conftest import requires_services
from tests.realtime.helpers import linked
from vantage6.layers import RabbitmqChannelLayer

REFUSED_SETUPS = 3


def established_to(port: int) -> int:
    """TCP connections of this machine to local ``port`` that are established (the link's port is this
    test's own: every connection to it is the layer's)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            remote, state = row.split()[2:4]
            count += int(remote.rsplit(":", 1)[1], 16) == port and state == "01"
    return count


@requires_services("rabbitmq")
def test_refused_setups_leave_no_broker_connection_open(caplog):
    async def refused_setups(link, uri: str) -> list[int]:
        # The queue the layer declares is held, exclusively, by another connection (as by the layer's own
        # cut connection that the broker has not seen end): each of the layer's setups is refused.
        holder = carehare.Connection(url=os.environ["V6_RABBITMQ_URI"])
        await holder.connect()
        layer = RabbitmqChannelLayer(host=uri, **settings.RABBITMQ_LAYER_CONFIG)
        try:
            await holder.queue_declare(layer._queue_name, exclusive=True)
            joining = asyncio.create_task(layer.group_add("room", await layer.new_channel()))
            open_after_each, deadline = [], time.monotonic() + 15
            while len(open_after_each) < REFUSED_SETUPS and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if len(refusals()) > len(open_after_each):
                    open_after_each.append(established_to(link.port))
            await holder.close()
            await asyncio.wait_for(joining, 15)  # the queue released, the layer has its broker
            return open_after_each
        finally:
            if not holder.closed.done():
                await holder.close()
            await asyncio.wait_for(layer.close(), 15)

    def refusals() -> list[logging.LogRecord]:
        return [record for record in caplog.records if "RESOURCE_LOCKED" in record.getMessage()]

    with (
        caplog.at_level(logging.ERROR, logger="channels_rabbitmq.core"),
        linked(os.environ["V6_RABBITMQ_URI"]) as (link, uri),
    ):
        open_after_each = asyncio.run(refused_setups(link, uri))

    assert len(open_after_each) == REFUSED_SETUPS, "the broker did not refuse the layer's setups"
    assert open_after_each == [0] * REFUSED_SETUPS  # was [1, 2, 3]


def test_the_reconnect_still_calls_the_setups_the_layer_wraps():
    # The fix replaces two module functions that the reconnect looks up by name: a channels-rabbitmq whose
    # reconnect no longer does would drop the fix silently.
    assert version("channels-rabbitmq") == "4.0.1", "check vantage6.layers._closed_on_failure against it"
    names = core.RabbitmqChannelLayer._reconnect_forever.__code__.co_names
    assert {"_setup_connection", "_setup_subscriptions"} <= set(names)
    for setup in (core._setup_connection, core._setup_subscriptions):
        assert setup.__code__.co_name == "setup_or_close"
