"""The database work of the events clients send over their sockets, on a thread of its own.

``channels.db.database_sync_to_async`` builds a wrapper, copies the context and wakes a thread and the
loop for every call; a node's event is a single small lookup, so that hand-over cost more than the
lookup itself. Here the calls made while the thread works wait, in order, and go together in its
next batch: one wake-up of the thread and one of each loop for the whole batch (events come in
bursts: every socket of a room answers the same event). Django's connection upkeep runs around each
batch, as around a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

from django.db import close_old_connections

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, asyncio.Future, Callable[..., Any], tuple]


class DatabaseThread:
    """One daemon thread running database calls in the order they came."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: list[_Call] = []
        self._lock = threading.Lock()
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._waking = False  # a wake-up is on its way: the calls appended meanwhile go with it
        self._thread: threading.Thread | None = None

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` on the thread; its result, or its exception."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._calls.append((loop, future, call, args))
            wake, self._waking = not self._waking, True
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        if wake:
            self._wake.put(None)
        return await future

    def _work(self) -> None:
        while True:
            self._wake.get()
            with self._lock:
                batch, self._calls, self._waking = self._calls, [], False
            close_old_connections()
            done: dict[
                asyncio.AbstractEventLoop, list[tuple[asyncio.Future, object, BaseException | None]]
            ] = {}
            for loop, future, call, args in batch:
                try:
                    outcome: tuple[object, BaseException | None] = (call(*args), None)
                except BaseException as exc:  # the caller gets it, as from any awaited call
                    outcome = (None, exc)
                done.setdefault(loop, []).append((future, *outcome))
            close_old_connections()
            for loop, results in done.items():
                with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle, results)


def _settle(results: list[tuple[asyncio.Future, object, BaseException | None]]) -> None:
    for future, result, exc in results:
        if future.cancelled():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)


events = DatabaseThread("socket-events-db")
"""The thread of the database work of client events."""

sweeps = DatabaseThread("socket-sweeps-db")
"""The thread of the sweeps' database work (silent nodes, dead processes): a sweep waiting for a row another
process holds holds up no client's handshake, admission or event."""
