"""Coroutines started at once: the first step runs in the caller's turn of the event loop, and a task runs
only what waits (asyncio's eager tasks, which Python 3.12 brings). Whatever a message's handler does
without waiting - deliver an event, queue its frames - then happens in the turn that read the message,
not in the next one."""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any


def start(running: Coroutine[Any, Any, None]) -> asyncio.Task | None:
    """Step ``running`` now, in a copy of the context as a task's own, up to its first wait; the task
    that goes on with it from there, or None if it finished without waiting (what it raised is the
    caller's)."""
    context = contextvars.copy_context()
    try:
        waiting = context.run(running.send, None)
    except StopIteration:
        return None
    return asyncio.Task(_resume(running, waiting), context=context)


@types.coroutine
def _resume(running: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, None, None]:
    """Go on with a coroutine already started, which yielded ``waiting`` (what it waits for) to its
    caller: the task running this waits for it instead, then steps the coroutine on."""
    while True:
        try:
            yield waiting
        except BaseException as exc:  # the task was cancelled: the coroutine hears it
            try:
                waiting = running.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = running.send(None)
            except StopIteration:
                return
