"""A socket follows a rights change made while its long-polling session is taken over by another process
for its websocket upgrade: the change's recheck reaches both processes, and neither may miss it; nor is
a connect under way when the other process asks for the session lost.

The processes hold at the exact point of each window (``hooked_server``): the session's old owner has
handed it over while the new one has not adopted it yet, the old owner's recheck of it is under way
when it hands it over, or its connect is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import websocket

from nodes.events import collaboration_room
from tests.conftest import requires_services
from tests.realtime.helpers import (
    LiveWorld,
    PollingSession,
    create_task,
    eventually,
    hears,
    make_user,
    token,
)
from tests.realtime.live import HOOKED, Daphne, hooked_servers
from tests.realtime.test_socket_rights import _call

pytestmark = [pytest.mark.live, requires_services("rabbitmq"), pytest.mark.usefixtures("broker_only")]


@pytest.fixture(scope="module")
def hooked(live_db, live_folder):
    """The hooks' folder and two hooked server processes sharing the live database and RabbitMQ."""
    broker = os.environ["V6_RABBITMQ_URI"]
    with hooked_servers(live_db, live_folder, [HOOKED, HOOKED], V6_RABBITMQ_URI=broker) as (folder, servers):
        yield folder, *servers


def _listening(host: Daphne, world: LiveWorld):
    """A user who hears collaboration AB, connected over long-polling to ``host``: the user and session."""
    user = make_user(world.org_a, event_scope="COLLABORATION")
    polling = PollingSession([host.url], token(user))
    polling.send("40/tasks,{}")
    joined = ["message", f"{user.username} joined room {collaboration_room(world.collab_ab.pk)}"]
    deadline, events = time.monotonic() + 10, []
    while joined not in events:
        assert time.monotonic() < deadline, events
        events += polling.events(0.5)
    return user, polling


def _upgrade(ws: websocket.WebSocket) -> None:
    ws.send("2probe")
    assert ws.recv() == "3probe"
    ws.send("5")


def _websocket(host: Daphne, sid: str) -> websocket.WebSocket:
    url = f"ws://127.0.0.1:{host.port}/socket.io/?EIO=4&transport=websocket&sid={sid}"
    return websocket.create_connection(url, timeout=30)


@contextmanager
def _armed(folder: Path, host: Daphne, hook: str) -> Iterator[None]:
    armed = folder / f"{host.port}.{hook}"
    armed.touch()
    try:
        yield
    finally:
        armed.unlink()


def _assert_upgraded_and_left(ws: websocket.WebSocket, host: Daphne, world: LiveWorld) -> None:
    """Once upgraded, the socket is told it left collaboration AB's room, and hears no more of its events."""
    try:
        _upgrade(ws)
        room = collaboration_room(world.collab_ab.pk)
        assert hears(ws, lambda frame: frame.endswith(f' left room {room}"]'), 10)
        task_id = create_task(host.url, make_user(world.org_a, roles=("Researcher",)), world.collab_ab)
        assert not hears(ws, lambda frame: f'"new_task",{{"id":{task_id},' in frame, 2)
    finally:
        ws.close()


def test_a_change_made_while_the_session_is_on_its_way_to_the_other_process_moves_it(hooked, live_world):
    folder, a, b = hooked
    user, polling = _listening(a, live_world)
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    with _armed(folder, b, "hold-takeover"), ThreadPoolExecutor(1) as pool:
        opening = pool.submit(_websocket, b, polling.sid)
        # a handed the session over; b holds it until it handled the change's recheck.
        assert eventually(lambda: (folder / f"{b.port}.taking-over").exists())
        _call("PATCH", f"{a.url}/api/user/{user.pk}", admin, rules=[])
        ws = opening.result(30)

    _assert_upgraded_and_left(ws, a, live_world)


def test_a_recheck_under_way_when_the_session_is_handed_over_is_done_by_its_new_process(hooked, live_world):
    folder, a, b = hooked
    user, polling = _listening(a, live_world)
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    with _armed(folder, a, "hold-recheck"):
        _call("PATCH", f"{b.url}/api/user/{user.pk}", admin, rules=[])
        # a's recheck of the session is held until a handed it over to b.
        assert eventually(lambda: (folder / f"{a.port}.rechecking").exists())
        ws = _websocket(b, polling.sid)

    _assert_upgraded_and_left(ws, a, live_world)


def test_a_session_asked_for_while_it_connects_moves_once_connected(hooked, live_world):
    folder, a, b = hooked
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    polling = PollingSession([a.url], token(user))
    with _armed(folder, a, "hold-connect"), ThreadPoolExecutor(1) as pool:
        connecting = pool.submit(polling.send, "40/tasks,{}")
        # a's connect of the session is held until b asked for the session.
        assert eventually(lambda: (folder / f"{a.port}.connecting").exists())
        ws = _websocket(b, polling.sid)
        connecting.result(30)
    try:
        _upgrade(ws)
        assert hears(ws, lambda frame: frame.startswith('40/tasks,{"sid":'), 10)
        room = collaboration_room(live_world.collab_ab.pk)
        assert hears(ws, lambda frame: frame.endswith(f' joined room {room}"]'), 10)
        task_id = create_task(a.url, make_user(live_world.org_a, roles=("Researcher",)), live_world.collab_ab)
        assert hears(ws, lambda frame: f'"new_task",{{"id":{task_id},' in frame, 10)
    finally:
        ws.close()
