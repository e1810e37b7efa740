"""A server process whose websocket takeovers and rechecks can be held at a chosen point, for tests that
need an exact interleaving of two processes: ``python -c "import tests.realtime.hooked_server as h;
h.main()"`` with ``HOOKS_DIR`` set. A hook is armed by a file ``<port>.<hook>`` in that folder, and marks
that it holds by a file ``<port>.<mark>``; each holds for at most ``HOLD_SECONDS``.

* ``hold-takeover`` (mark ``taking-over``): the state of a session taken over from another process has
  come (that process no longer has it), and is adopted only after this process handled a recheck.
* ``hold-recheck`` (mark ``rechecking``): a recheck of this process's sessions is held before its
  ``verify`` until all of them were handed over to another process.
* ``hold-connect`` (mark ``connecting``): a namespace connect is held before its admission until
  another process asked for the session.
* ``hold-admission`` (mark ``admitting``): a namespace connect is held before its admission, in the loop
  (the process serves everything else meanwhile), until the hook's file is removed.
* ``hold-identified`` (mark ``identified``): a namespace connect is held once it read the identity and
  rights of its socket (``nodes.consumers._user`` / ``_node``), until the hook's file is removed.
* ``hold-connected`` (mark ``connected``): a namespace connect is held once it recorded its connection
  (``nodes.consumers.connected``), before it reads the identity, until the hook's file is removed.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Callable
from pathlib import Path

from vantage6 import serve
from vantage6.socketio.server import Namespace, Server
from vantage6.socketio.store import Session

HOLD_SECONDS = 15
_in_recheck = contextvars.ContextVar("in_recheck", default=False)


def _file(name: str) -> Path:
    return Path(os.environ["HOOKS_DIR"]) / f"{os.environ['V6_PORT']}.{name}"


async def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HOLD_SECONDS
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _hold_after(call: Callable, hook: str, mark: str) -> Callable:
    """``call``, which holds after it returned while the file of ``hook`` exists."""

    def held(*args: object) -> object:
        result = call(*args)
        if _file(hook).exists():  # on a thread of the database work: it may sleep
            _file(mark).touch()
            deadline = time.monotonic() + HOLD_SECONDS
            while _file(hook).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return result

    return held


def _hold_connects() -> None:
    import vantage6.asgi  # noqa: F401 - sets Django up; daphne serves this module, imported already
    from nodes import consumers

    consumers._user = _hold_after(consumers._user, "hold-identified", "identified")  # type: ignore[assignment]
    consumers._node = _hold_after(consumers._node, "hold-identified", "identified")  # type: ignore[assignment]
    consumers.connected = _hold_after(consumers.connected, "hold-connected", "connected")  # type: ignore[assignment]


def install() -> None:
    _hold_connects()
    adopt, start_recheck = Server._adopt, Server._start_recheck
    recheck, verify = Server._recheck, Server._verify
    admit, hand_over = Server._admit, Server._hand_over
    handled = [0]  # rechecks this process handled
    asked: set[str] = set()  # sessions another process asked for

    def counting_start_recheck(self: Server, owners: set[str] | None) -> asyncio.Task | None:
        checking = start_recheck(self, owners)
        handled[0] += 1
        return checking  # what a recheck's confirmation waits for (``Server._rechecked``)

    async def holding_adopt(self: Server, session: Session) -> None:
        if session.namespaces and _file("hold-takeover").exists():  # a session with a past: taken over
            before = handled[0]
            _file("taking-over").touch()
            await _until(lambda: handled[0] > before)
        await adopt(self, session)

    async def marked_recheck(self: Server, sessions: list[Session]) -> None:
        token = _in_recheck.set(True)
        try:
            await recheck(self, sessions)
        finally:
            _in_recheck.reset(token)

    async def holding_verify(self: Server, sessions: list[Session]) -> None:
        if _in_recheck.get() and _file("hold-recheck").exists():
            _file("rechecking").touch()
            await _until(lambda: all(session.sid in self.moved for session in sessions))
        await verify(self, sessions)

    async def noting_hand_over(self: Server, message: dict) -> None:
        asked.add(message["sid"])
        await hand_over(self, message)

    async def holding_admit(self: Server, session: Session, namespace: str, handler: Namespace) -> None:
        if _file("hold-connect").exists():
            _file("connecting").touch()
            await _until(lambda: session.sid in asked)
        if _file("hold-admission").exists():
            _file("admitting").touch()
            await _until(lambda: not _file("hold-admission").exists())
        await admit(self, session, namespace, handler)

    Server._hand_over = noting_hand_over  # type: ignore[method-assign]
    Server._admit = holding_admit  # type: ignore[method-assign]
    Server._start_recheck = counting_start_recheck  # type: ignore[method-assign]
    Server._adopt = holding_adopt  # type: ignore[method-assign]
    Server._recheck = marked_recheck  # type: ignore[method-assign]
    Server._verify = holding_verify  # type: ignore[method-assign]


def main() -> None:
    install()
    serve.main()
