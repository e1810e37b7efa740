"""Direct links between the processes of one ``python -m vantage6.serve`` (they share a machine).

The parent makes a Unix socket pair for each two of its processes. Each process writes the room packets
of its own loop to every sibling at the end of the turn of the loop, which passes them on to its sockets
of the room in the turn of its loop that read them (a sibling in no such room drops them): events between
siblings do not wait for the broker, nor for the sibling's bindings there, and go on while the broker is
away. The broker still carries the room packets to and from the processes of other machines (``Server``);
its messages between siblings are told apart by ``family``, which the parent gives to all its processes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable

from vantage6 import eager

logger = logging.getLogger(__name__)

_SIZE = struct.Struct("!I")
# A sibling that leaves this many bytes unread (it stalls) misses what comes next, counted as dropped.
WRITE_BUFFER_LIMIT = 64 * 1024 * 1024
# Frames read but not passed on yet (the delivery waits): reading pauses beyond this many.
INBOX_LIMIT = 64

Deliver = Callable[[str, list[str]], Awaitable[None]]
"""Passes a sibling's room packets on to this process's sockets of the room: group, packets."""


class Siblings:
    """This process's links to its siblings, and their family."""

    def __init__(self, family: str, sockets: list[socket.socket]) -> None:
        self.family = family
        self._sockets = sockets
        self._writers: list[_Link] = []
        self.dropped = 0
        self._warned = False

    async def start(self, deliver: Deliver) -> None:
        """Serve the links in the running loop: what comes from them goes to ``deliver``, in order."""
        sockets, self._sockets = self._sockets, []
        loop = asyncio.get_running_loop()
        for sock in sockets:
            _, link = await loop.create_unix_connection(lambda: _Link(self, deliver), sock=sock)
            self._writers.append(link)

    def send(self, group: str, packets: list[str]) -> None:
        """``packets`` of room ``group`` to every sibling, without waiting."""
        if not self._writers:
            return
        frame = _frame(group, packets)
        for link in self._writers:
            if link.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    logger.warning("a sibling server process does not read its room packets; dropped")
                continue
            link.transport.write(frame)


def _frame(group: str, packets: list[str]) -> bytes:
    """The link's frame of a room's packets: its size, then the group and each packet, each its size and
    its UTF-8 text. A packet is passed on as it is, not JSON-encoded a second time (and decoded on the other
    side): a room event is on the link of every event a node reports."""
    body = b"".join([_SIZE.pack(len(data)) + data for data in (group.encode(), *map(str.encode, packets))])
    return _SIZE.pack(len(body)) + body


def _unframe(buffer: bytearray, start: int, end: int) -> tuple[str, list[str]]:
    """The group and the packets of the frame whose body is ``buffer[start:end]``."""
    texts = []
    while start < end:
        (size,) = _SIZE.unpack_from(buffer, start)
        start += _SIZE.size
        texts.append(buffer[start : start + size].decode())
        start += size
    return texts[0], texts[1:]


class _Link(asyncio.Protocol):
    """The link to one sibling. Its frames are passed on in the turn of the loop that read them, up to the
    first wait of the delivery (a stream reader's task would take a turn more); while a delivery waits,
    the frames after it queue, in order."""

    def __init__(self, siblings: Siblings, deliver: Deliver) -> None:
        self.siblings = siblings
        self.deliver = deliver
        self.transport: asyncio.Transport
        self.buffer = bytearray()  # the start of a frame not read whole yet
        self.inbox: deque[tuple[str, list[str]]] = deque()
        self.task: asyncio.Task | bool | None = None  # True during the first step, then a task while it waits
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's

    def data_received(self, data: bytes) -> None:
        buffer, offset = self.buffer, 0
        buffer += data
        while len(buffer) - offset >= _SIZE.size:
            (size,) = _SIZE.unpack_from(buffer, offset)
            end = offset + _SIZE.size + size
            if len(buffer) < end:
                break
            self.inbox.append(_unframe(buffer, offset + _SIZE.size, end))
            offset = end
        del buffer[:offset]
        if not self.inbox:
            return
        if self.task is None:
            self.task = True
            if (task := eager.start(self._pass_on())) is not None:  # else done: it cleared the task
                self.task = task
        elif len(self.inbox) >= INBOX_LIMIT and not self.paused:
            self.paused = True  # the sibling writes faster than this process delivers
            self.transport.pause_reading()

    async def _pass_on(self) -> None:
        while self.inbox:
            group, packets = self.inbox.popleft()
            if self.paused and len(self.inbox) < INBOX_LIMIT // 2:
                self.paused = False
                self.transport.resume_reading()
            try:
                await self.deliver(group, packets)
            except Exception:
                logger.exception("passing a sibling's room packets on failed")
        self.task = None

    def connection_lost(self, exc: Exception | None) -> None:
        logger.warning("a sibling server process is gone")
        if self in self.siblings._writers:
            self.siblings._writers.remove(self)
