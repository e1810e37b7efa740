"""The RabbitMQ channel layer, made safe for callers that get cancelled while the broker is away, with a
publish that does not wait for the broker's confirm, a bounded backlog while the broker is away, and a
reconnect that closes the connections it gives up on."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial, wraps

import carehare
from carehare import _connection, _protocol
from channels.exceptions import StopConsumer
from channels_rabbitmq import core
from channels_rabbitmq.util import GroupRecipient, serialize_message

logger = logging.getLogger(__name__)

# Messages of one layer waiting for its broker: beyond this many, the oldest are dropped.
BACKLOG_LIMIT = 10_000
# How long the backlog waits before trying again when the connection it was given closed meanwhile.
_RETRY_SECONDS = 0.1
# How long the reconnect waits for the broker to close a connection whose setup failed.
_CLOSE_SECONDS = 5

_dropped = 0
_unconfirmed = 0


def dropped() -> int:
    """Messages this process dropped from a full backlog while its broker was away."""
    return _dropped


def lost() -> int:
    """Messages this process published that may never have reached the broker: dropped from a full
    backlog, or not confirmed (written to a connection that was closing)."""
    return _dropped + _unconfirmed


class RabbitmqChannelLayer(core.RabbitmqChannelLayer):
    """Every layer call awaits one shared future of the broker connection; a caller cancelled while it
    waits (a client that left, a publish given up on) would cancel that future too, and the layer would
    never connect again. Each caller awaits a shield of it instead."""

    backlog_limit = BACKLOG_LIMIT

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # (group, message) waiting for the broker, in order; published by one task once it is back.
        self._backlog: deque[tuple[str, dict]] = deque()
        self._backlog_task: asyncio.Task | None = None
        self._warned = False

    @property
    def carehare_connection(self) -> asyncio.Future:
        return asyncio.shield(super().carehare_connection)

    def publish_soon(self, group: str, message: dict) -> None:
        """``group_send`` written to the broker now, without waiting for its confirm (a refusal is
        logged when it comes). Without a broker connection at the moment it waits for one, in order
        with the others, among at most ``backlog_limit`` (the oldest is dropped, and counted)."""
        if self._backlog or not self._publish_now(group, message):
            self._wait_for_broker(group, message)

    @property
    def connected(self) -> bool:
        """Whether the layer has a broker connection at the moment."""
        connection = self._carehare_connection
        return (
            not self._want_close
            and connection.done()
            and not connection.cancelled()
            and connection.exception() is None
        )

    def _publish_now(self, group: str, message: dict) -> bool:
        if not self.connected:
            return False
        body = serialize_message(GroupRecipient(group), message)
        try:
            connection = self._carehare_connection.result()
            confirm = connection.publish(body, exchange_name=self.groups_exchange, routing_key=group)
        except carehare.ConnectionClosed:
            return False
        confirm.add_done_callback(partial(_confirmed, group))
        return True

    def _wait_for_broker(self, group: str, message: dict) -> None:
        global _dropped
        self._backlog.append((group, message))
        if len(self._backlog) > self.backlog_limit:
            self._backlog.popleft()
            _dropped += 1
            if not self._warned:  # once per outage
                self._warned = True
                logger.warning(
                    "the broker is away and %d room messages wait for it: the oldest are dropped",
                    self.backlog_limit,
                )
        if self._backlog_task is None:
            self._backlog_task = asyncio.get_running_loop().create_task(self._publish_backlog())

    async def _publish_backlog(self) -> None:
        try:
            while self._backlog:
                try:
                    await self.carehare_connection  # waits while the broker is away
                except StopConsumer:
                    return  # the layer was closed: what waits is lost, as the layer's own messages
                while self._backlog and self._publish_now(*self._backlog[0]):
                    self._backlog.popleft()
                if self._backlog:  # the connection closed meanwhile, and the layer has not noticed yet
                    await asyncio.sleep(_RETRY_SECONDS)
            self._warned = False
        finally:
            self._backlog_task = None


def _confirmed(group: str, confirm: asyncio.Future) -> None:
    global _unconfirmed
    if not confirm.cancelled() and (exc := confirm.exception()) is not None:
        _unconfirmed += 1
        logger.warning("a publish to group %s was not confirmed by the broker: %r", group, exc)


class _HandshakeProtocol(_protocol.Protocol):
    """carehare's protocol, whose connect learns of a broker that closes the socket during the handshake
    without a word (end of file: a broker stopping or starting, a proxy with none behind it). carehare
    leaves that connect waiting forever (it asserts an error), and with it the layer's reconnect: the
    process would never have its broker again. Now the connect fails, and the layer tries again."""

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and not self.open.done() and self._crash_exc is None and self._close_frame is None:
            exc = ConnectionResetError("the broker closed the connection during the handshake")
        super().connection_lost(exc)


_connection.Protocol = _HandshakeProtocol  # the protocol carehare connects with


def _closed_on_failure(setup: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``setup`` of a connection of the layer's reconnect, which closes that connection when it fails.
    channels-rabbitmq drops a connection whose setup failed without closing it and tries again a second
    later: while the broker still holds the process's exclusive queue for a connection cut without its
    knowing (``RESOURCE_LOCKED``, until it notices), every retry left one more connection open."""

    @wraps(setup)
    async def setup_or_close(*, connection: carehare.Connection, **kwargs: object) -> None:
        try:
            await setup(connection=connection, **kwargs)
        except Exception:
            await _close(connection)
            raise

    return setup_or_close


async def _close(connection: carehare.Connection) -> None:
    if connection.closed.done():  # closed by the broker or the network meanwhile
        return
    try:
        # Shielded: the wait must not cancel carehare's own future of the close (it would fail setting
        # it). A broker that does not answer is left to carehare's heartbeat monitor.
        await asyncio.wait_for(asyncio.shield(connection.close()), _CLOSE_SECONDS)
    except Exception as exc:  # the setup's error is the one raised
        logger.warning("a RabbitMQ connection whose setup failed did not close cleanly: %r", exc)


# The two steps of the layer's reconnect (``_reconnect_forever`` calls them by these module names).
core._setup_connection = _closed_on_failure(core._setup_connection)
core._setup_subscriptions = _closed_on_failure(core._setup_subscriptions)
