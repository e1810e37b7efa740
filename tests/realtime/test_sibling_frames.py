"""What the link between sibling processes carries: a room's packets as they are, whatever their text.
Over a real Unix socket pair, as ``vantage6.serve`` links its processes."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vantage6.socketio.packets import event_packet
from vantage6.socketio.siblings import Siblings

PACKETS = [
    event_packet("/tasks", "algorithm_status_change", {"status": "active", "run_id": 1, "parent_id": None}),
    event_packet("/tasks", "message", 'a "quoted" line\nand é, \u2028, \U0001f600, \\u0000'),
    "",
    "x" * 70_000,  # longer than one read of the socket
]


@pytest.mark.asyncio
async def test_the_link_carries_a_rooms_packets_as_they_are():
    ours, theirs = socket.socketpair()
    writer = Siblings("family", [ours])
    await writer.start(_nothing)
    writer.send("sio.tasks.collaboration_1", PACKETS[:1])
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    raw = await asyncio.wait_for(loop.sock_recv(theirs, 1 << 16), 5)
    # The packet's own bytes, not a JSON string of them (each quote escaped), which the other side
    # would have to decode again.
    assert PACKETS[0].encode() in raw


@pytest.mark.asyncio
async def test_every_packet_arrives_whole_and_in_order():
    ours, theirs = socket.socketpair()
    delivered: list[tuple[str, list[str]]] = []
    done = asyncio.Event()

    async def deliver(group: str, packets: list[str]) -> None:
        delivered.append((group, packets))
        if group == "last":
            done.set()

    await Siblings("family", [theirs]).start(deliver)
    writer = Siblings("family", [ours])
    await writer.start(_nothing)
    writer.send("sio.tasks.collaboration_1", PACKETS)
    writer.send("sio.tasks.all_nodes", PACKETS[1:2])
    writer.send("last", [])
    await asyncio.wait_for(done.wait(), 5)
    assert delivered == [
        ("sio.tasks.collaboration_1", PACKETS),
        ("sio.tasks.all_nodes", PACKETS[1:2]),
        ("last", []),
    ]


async def _nothing(_group: str, _packets: list[str]) -> None:
    raise AssertionError("the receiving process sends nothing")
