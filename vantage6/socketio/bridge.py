"""Running channel-layer work from synchronous code (views, management commands, sync tests).

Layers such as channels-rabbitmq can only be built inside a running event loop and stay bound to it,
so a fresh loop per call (``async_to_sync``) breaks from the second call on. Synchronous callers
therefore share one long-lived publisher thread with its own loop and its own layer instance;
coroutines it runs see that instance through ``layer()``.
The in-memory layer is the exception: it only works within one process when the sender uses the
very instance the consumers listen on, which ``async_to_sync`` does.

A thread that serves a request whose answer the event loop writes (``serving``) leaves its layer work
to that loop, after the answer (``after_answer``): the answer waits for no wake-up of the loop or of
another process, and the thread for nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, channel_layers, get_channel_layer

T = TypeVar("T")

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 60

_publisher_layer: ContextVar[BaseChannelLayer | None] = ContextVar("publisher_layer", default=None)
_thread = threading.local()


def layer(alias: str) -> BaseChannelLayer:
    """The layer for the running loop: the publisher's own on its thread, else the process's."""
    return _publisher_layer.get() or get_channel_layer(alias)


def in_memory(alias: str) -> bool:
    """Whether the layer of ``alias`` is the in-memory one (known without building it)."""
    return channel_layers.configs[alias]["BACKEND"].endswith("InMemoryChannelLayer")


class _Publisher:
    """A daemon thread running an event loop that owns one channel layer."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.loop = asyncio.new_event_loop()
        self.layer: BaseChannelLayer | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"publisher-{alias}", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        if self.layer is None:
            self.layer = channel_layers.make_backend(self.alias)
        _publisher_layer.set(self.layer)  # this task's context only
        return await call()

    def run(self, call: Callable[[], Awaitable[T]], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(self._call(call), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # Not cancelled: the work goes on once the broker is back (half-done work would be worse).
            raise TimeoutError(f"channel layer work not done within {timeout} s") from None

    def post(self, call: Callable[[], Awaitable[object]]) -> None:
        asyncio.run_coroutine_threadsafe(self._call(call), self.loop).add_done_callback(log_failure)

    def stop(self) -> None:
        async def close() -> None:
            if self.layer is not None and hasattr(self.layer, "close"):
                await self.layer.close()

        if self.loop.is_running():
            with contextlib.suppress(Exception):  # best effort at interpreter exit
                asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)


async def _await(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


_publishers: dict[str, _Publisher] = {}
_lock = threading.Lock()


def run(call: Callable[[], Awaitable[T]], alias: str, *, timeout: float = TIMEOUT_SECONDS) -> T:
    """Run the coroutine ``call()`` to completion from synchronous code (not from a loop's thread);
    TimeoutError when it takes over ``timeout`` seconds, while the work goes on in the background."""
    if in_memory(alias):
        return async_to_sync(_await)(call)  # never waits on a broker
    return _publisher(alias).run(call, timeout)


def post(call: Callable[[], Awaitable[object]], alias: str) -> None:
    """Start the coroutine ``call()`` from synchronous code without waiting for it (a failure is
    logged); the calls of one thread run in the order they were posted. In memory it runs to
    completion at once (the in-memory layer lives in the caller's loop)."""
    if in_memory(alias):
        async_to_sync(_await)(call)
        return
    _publisher(alias).post(call)


def serving(later: list[Callable[[], object]], func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in this thread for a request whose answer the event loop writes, then calls what
    ``func`` left in ``later`` (``after_answer``)."""
    _thread.later = later
    try:
        return func(*args)
    finally:
        _thread.later = None


def after_answer(call: Callable[[], object]) -> bool:
    """Have the loop call ``call()`` (once) after it wrote the answer of this thread's request, if the
    thread serves one (``serving``); whether it will."""
    later = getattr(_thread, "later", None)
    if later is None:
        return False
    if call not in later:
        later.append(call)
    return True


def _publisher(alias: str) -> _Publisher:
    with _lock:
        publisher = _publishers.get(alias)
        if publisher is None:
            publisher = _publishers[alias] = _Publisher(alias)
    return publisher


def log_failure(future: concurrent.futures.Future) -> None:
    """A done callback: the failure of work nobody waits for is logged."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.error("channel layer work failed", exc_info=exc)
