"""A sibling process that stops reading its link (stalled, not gone): the writer buffers at most
``WRITE_BUFFER_LIMIT`` for it, drops and counts whole frames past that, and the link carries on, frames
intact and in order, once the sibling reads again. Over a real Unix socket pair, as ``vantage6.serve``
links its processes."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vantage6.socketio.siblings import WRITE_BUFFER_LIMIT, Siblings

PACKET = "x" * (256 * 1024)  # a large room packet (an event with a big payload)
SENT = 2 * WRITE_BUFFER_LIMIT // len(PACKET)  # twice what the writer may hold


@pytest.mark.asyncio
async def test_a_stalled_sibling_costs_the_writer_a_bounded_buffer_and_is_served_again():
    ours, theirs = socket.socketpair()
    writer = Siblings("family", [ours])
    await writer.start(_nothing)
    sizes = []
    for number in range(SENT):  # the sibling reads none of it: the kernel's buffers fill, then ours
        writer.send(f"room{number}", [PACKET])
        sizes.append(writer._writers[0].transport.get_write_buffer_size())
        await asyncio.sleep(0)

    frame = len(PACKET) + 64
    assert max(sizes) <= WRITE_BUFFER_LIMIT + frame  # one frame past the limit at most
    assert writer.dropped >= SENT // 3  # the rest was dropped and counted
    kept = SENT - writer.dropped

    received: list[str] = []
    got_all = asyncio.Event()

    async def deliver(group: str, packets: list[str]) -> None:
        received.append(group if packets == ([PACKET] if group.startswith("room") else ["small"]) else "torn")
        if group == "after":
            got_all.set()

    sibling = Siblings("family", [theirs])
    await sibling.start(deliver)  # the sibling reads again
    await _until(lambda: writer._writers[0].transport.get_write_buffer_size() == 0)
    writer.send("after", ["small"])
    await asyncio.wait_for(got_all.wait(), 30)

    # Whole frames, in order: the first ``kept`` sent, none of the dropped ones, then the link goes on.
    assert received == [f"room{n}" for n in range(kept)] + ["after"]
    assert writer._writers  # still linked
    dropped = writer.dropped
    writer.send("later", ["small"])
    await _until(lambda: received[-1] == "later")
    assert writer.dropped == dropped


async def _nothing(_group: str, _packets: list[str]) -> None:
    raise AssertionError("the stalled sibling sends nothing")


async def _until(check, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
