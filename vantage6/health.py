"""The checks behind ``/api/health``: whether this process reaches its database and, when configured,
RabbitMQ. Each check ends within a few seconds, so that a proxy or orchestrator polling it gets an
answer in time to route around a broken process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import carehare
from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

RABBITMQ_TIMEOUT_SECONDS = 2.0
# The anonymous endpoint may be polled often: one broker login per process per this many seconds.
RABBITMQ_ANSWER_SECONDS = 2.0


def database_ok() -> bool:
    """``SELECT 1`` on this request's connection (its connect is bounded by ``connect_timeout``)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError as exc:
        logger.warning("the database is unavailable: %s", exc)
        return False


async def _login(uri: str) -> None:
    broker = carehare.Connection(uri, connect_timeout=RABBITMQ_TIMEOUT_SECONDS)
    # carehare bounds the TCP connect only; the AMQP handshake and close get the same bound here.
    await asyncio.wait_for(broker.connect(), RABBITMQ_TIMEOUT_SECONDS)
    await asyncio.wait_for(broker.close(), RABBITMQ_TIMEOUT_SECONDS)


class RabbitmqCheck:
    """An AMQP login (credentials and virtual host included), one at a time, its answer reused for
    ``RABBITMQ_ANSWER_SECONDS``. While a check is under way, other polls get the previous answer
    instead of waiting for it: a flood of polls during an outage must not hold the request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._ok = False

    def __call__(self, uri: str) -> bool:
        # Only before the first answer is there nothing to give but the check's own.
        if not self._lock.acquire(blocking=self._checked_at == float("-inf")):
            return self._ok
        try:
            if time.monotonic() - self._checked_at >= RABBITMQ_ANSWER_SECONDS:
                self._ok = self._login(uri)
                self._checked_at = time.monotonic()
            return self._ok
        finally:
            self._lock.release()

    @staticmethod
    def _login(uri: str) -> bool:
        try:
            asyncio.run(_login(uri))
        except Exception as exc:  # any failure to log in means "down"; the reason goes to the log
            logger.warning("RabbitMQ is unavailable: %r", exc)
            return False
        return True


rabbitmq_ok = RabbitmqCheck()


def report() -> dict[str, bool]:
    """Each configured service and whether it is up (``rabbitmq`` only when it is configured)."""
    state = {"database": database_ok()}
    if settings.RABBITMQ_URI:
        state["rabbitmq"] = rabbitmq_ok(settings.RABBITMQ_URI)
    return state
