"""Direct links between the processes of one ``python -m vantage6.serve`` (they share a machine).

The parent makes a Unix socket pair for each two of its processes. Each process writes the room packets
of its own loop to every sibling at the end of the turn of the loop, which passes them on to its sockets
of the room (a sibling in no such room drops them): events between siblings do not wait for the broker,
nor for the sibling's bindings there, and go on while the broker is away. The broker still carries the
room packets to and from the processes of other machines (``Server``); its messages between siblings are
told apart by ``family``, which the parent gives to all its processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

_SIZE = struct.Struct("!I")
# A sibling that leaves this many bytes unread (it stalls) misses what comes next, counted as dropped.
WRITE_BUFFER_LIMIT = 64 * 1024 * 1024

Deliver = Callable[[str, list[str]], Awaitable[None]]
"""Passes a sibling's room packets on to this process's sockets of the room: group, packets."""


class Siblings:
    """This process's links to its siblings, and their family."""

    def __init__(self, family: str, sockets: list[socket.socket]) -> None:
        self.family = family
        self._sockets = sockets
        self._writers: list[asyncio.StreamWriter] = []
        self.dropped = 0
        self._warned = False
        self._readers: set[asyncio.Task] = set()

    async def start(self, deliver: Deliver) -> None:
        """Serve the links in the running loop: what comes from them goes to ``deliver``, in order."""
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            self._writers.append(writer)
            task = asyncio.get_running_loop().create_task(self._read(reader, writer, deliver))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

    def send(self, group: str, packets: list[str]) -> None:
        """``packets`` of room ``group`` to every sibling, without waiting."""
        if not self._writers:
            return
        body = json.dumps([group, packets], separators=(",", ":")).encode()
        frame = _SIZE.pack(len(body)) + body
        for writer in self._writers:
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    logger.warning("a sibling server process does not read its room packets; dropped")
                continue
            writer.write(frame)

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deliver: Deliver
    ) -> None:
        try:
            while True:
                (size,) = _SIZE.unpack(await reader.readexactly(_SIZE.size))
                group, packets = json.loads(await reader.readexactly(size))
                try:
                    await deliver(group, packets)
                except Exception:
                    logger.exception("passing a sibling's room packets on failed")
        except (asyncio.IncompleteReadError, ConnectionError):
            logger.warning("a sibling server process is gone")
        finally:
            with contextlib.suppress(ValueError):
                self._writers.remove(writer)
            writer.close()
