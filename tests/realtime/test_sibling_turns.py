"""When a process passes on its siblings' room packets: in the turn of the loop that read them from the
link, in order behind a delivery that still waits. Over a real Unix socket pair, as ``vantage6.serve``
links its processes."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vantage6.socketio.siblings import INBOX_LIMIT, Siblings


async def _linked(deliver) -> Siblings:
    """A sibling writing to a process that passes its packets to ``deliver``; the writer."""
    ours, theirs = socket.socketpair()
    await Siblings("family", [theirs]).start(deliver)
    writer = Siblings("family", [ours])
    await writer.start(_nothing)
    return writer


@pytest.mark.asyncio
async def test_a_siblings_packets_are_passed_on_in_the_turn_that_read_them():
    delivered: list[tuple[str, list[str]]] = []

    async def deliver(group: str, packets: list[str]) -> None:
        delivered.append((group, packets))

    writer = await _linked(deliver)
    writer.send("room", ["a"])  # on the socket at once: the link's buffer is empty
    writer.send("room", ["b", "c"])
    # This coroutine goes on first in the next turn; the link is read after it in that turn.
    await asyncio.sleep(0)
    assert delivered == []
    await asyncio.sleep(0)
    assert delivered == [("room", ["a"]), ("room", ["b", "c"])]  # read and passed on in one turn


@pytest.mark.asyncio
async def test_packets_behind_a_waiting_delivery_keep_their_order_and_reading_pauses_meanwhile():
    delivered: list[str] = []
    gate = asyncio.get_running_loop().create_future()

    async def deliver(group: str, _packets: list[str]) -> None:
        if group == "0":
            await gate
        delivered.append(group)

    writer = await _linked(deliver)
    sent = 4 * INBOX_LIMIT
    for number in range(sent):
        writer.send(str(number), ["x" * 8192])  # far more than the sockets buffer
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    assert delivered == []  # all wait behind the first
    assert writer._writers[0].transport.get_write_buffer_size() > 0  # the reader stopped reading
    gate.set_result(None)
    for _ in range(100):
        if len(delivered) == sent:
            break
        await asyncio.sleep(0.02)
    assert delivered == [str(number) for number in range(sent)]
    assert writer.dropped == 0


async def _nothing(_group: str, _packets: list[str]) -> None:
    raise AssertionError("the receiving process sends nothing")
