"""On RabbitMQ, a room packet emitted in one process crosses the broker once to the room's other
processes and never comes back to its publisher; a socket that joined a room hears every event emitted
after its join, also on a process that started later; a stopped process is forgotten.

Each server here has a channel layer of its own (a queue of its own on the broker), as a process has.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import requests
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.conf import settings
from django.test import override_settings

from accounts.models import Authenticatable, AuthStatus
from tasks.models import Run, Task
from tests.conftest import requires_services
from tests.realtime.conftest import _daphne
from tests.realtime.helpers import ABSENT_BROKER, Sink, create_task, make_user, token
from tests.realtime.live import LIVE
from tests.realtime.test_websocket_writes import HANDSHAKE, Transport
from vantage6.socketio.consumers import WebsocketConsumer
from vantage6.socketio.server import Namespace, Server, from_process, room_group
from vantage6.socketio.siblings import Siblings
from vantage6.websocket import Factory

pytestmark = requires_services("rabbitmq")

NAMESPACE = "/tasks"
NO_SIBLINGS = {"to_siblings": 0, "from_siblings": 0}


def _server(alias: str) -> Server:
    return Server(
        namespaces={NAMESPACE: Namespace()},
        authenticate=lambda _headers: ({}, True),
        secret=b"secret",
        layer_alias=alias,
        settle_time=0.2,
    )


async def _member(server: Server, room: str) -> Sink:
    sink = Sink()
    session, _ = await server.open_session("websocket", {}, sink)
    await server.join(session, NAMESPACE, room)
    return sink


def _on_broker(
    scenario: Callable[[], Awaitable[object]], aliases: tuple[str, ...], host: str | None = None
) -> object:
    """Await ``scenario()`` with a RabbitMQ layer for each alias (on ``host``, the test broker by
    default); the layers are closed at the end."""
    config = {"host": host or os.environ["V6_RABBITMQ_URI"], **settings.RABBITMQ_LAYER_CONFIG}
    layers = {
        alias: {"BACKEND": "vantage6.layers.RabbitmqChannelLayer", "CONFIG": config} for alias in aliases
    }

    async def run() -> object:
        try:
            return await scenario()
        finally:
            for alias in aliases:
                if alias in channel_layers.backends:
                    await channel_layers[alias].close()

    with override_settings(CHANNEL_LAYERS=layers):
        channel_layers.backends.clear()
        try:
            return async_to_sync(run)()
        finally:
            channel_layers.backends.clear()


def _events(count: int) -> list[str]:
    return [f'42/tasks,["algorithm_status_change",{{"run_id":{number}}}]' for number in range(count)]


async def _settled(*servers: Server) -> None:
    for server in servers:
        await server.listening()
    while not all(server.settled for server in servers):
        await asyncio.sleep(0.05)


async def _emit(server: Server, count: int, room: str = "collaboration_1", first: int = 0) -> None:
    for number in range(first, first + count):  # one at a time: a message each
        await server.emit("algorithm_status_change", {"run_id": number}, room=room, namespace=NAMESPACE)
        await asyncio.sleep(0.01)


def _across_the_broker(emit_events: Callable[[Server], Awaitable[None]]) -> tuple[Sink, Sink, dict, dict]:
    """Two processes on the broker, each with a socket in collaboration_1; ``emit_events`` emits on
    the first. What each socket heard, and the room messages of each process."""
    emitting, other = _server("one"), _server("two")

    async def scenario() -> tuple[Sink, Sink, dict, dict]:
        await _settled(emitting, other)
        here, there = await _member(emitting, "collaboration_1"), await _member(other, "collaboration_1")
        await emit_events(emitting)
        await asyncio.sleep(0.3)
        return here, there, dict(emitting.room_messages), dict(other.room_messages)

    return cast(tuple[Sink, Sink, dict, dict], _on_broker(scenario, ("one", "two")))


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_an_event_crosses_the_broker_once_and_never_comes_back_to_its_publisher():
    here, there, sent, heard = _across_the_broker(lambda emitting: _emit(emitting, 10))

    assert here.packets == _events(10) and there.packets == _events(10)
    assert sent == {"published": 10, "received": 0, **NO_SIBLINGS}
    assert heard == {"published": 0, "received": 10, **NO_SIBLINGS}


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_the_events_of_one_turn_of_the_loop_go_out_in_one_message():
    async def in_one_turn(emitting: Server) -> None:
        await asyncio.gather(
            *(
                emitting.emit(
                    "algorithm_status_change", {"run_id": number}, room="collaboration_1", namespace=NAMESPACE
                )
                for number in range(50)
            )
        )

    here, there, sent, heard = _across_the_broker(in_one_turn)

    assert here.packets == _events(50) and there.packets == _events(50)
    assert sent == {"published": 1, "received": 0, **NO_SIBLINGS}
    assert heard == {"published": 0, "received": 1, **NO_SIBLINGS}


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_socket_hears_every_event_emitted_after_its_join_returned():
    emitting, joining = _server("one"), _server("two")

    async def scenario() -> list[list[str]]:
        await _settled(emitting, joining)
        return await _heard_after_joins(emitting, joining, emitter_in_room=True)

    assert _on_broker(scenario, ("one", "two")) == [_events(1)] * 20


async def _heard_after_joins(emitting: Server, joining: Server, *, emitter_in_room: bool) -> list[list[str]]:
    """What a socket of ``joining`` heard of one event that ``emitting`` emitted to each of 20 rooms
    right after the socket's join returned."""
    heard = []
    for number in range(20):
        room = f"collaboration_{number}"
        if emitter_in_room:
            await _member(emitting, room)
        sink = await _member(joining, room)
        await emitting.emit("algorithm_status_change", {"run_id": 0}, room=room, namespace=NAMESPACE)
        heard.append(sink)
    await asyncio.sleep(0.3)
    return [sink.packets for sink in heard]


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_process_that_starts_later_hears_and_is_heard_once_its_handshakes_are_open():
    first, second, late = _server("one"), _server("two"), _server("three")

    async def scenario() -> tuple[list[Sink], list[dict]]:
        await _settled(first, second)
        sinks = [await _member(first, "collaboration_1"), await _member(second, "collaboration_1")]
        sinks.append(await _member(late, "collaboration_1"))  # its handshake waits until it is known
        await late.emit("algorithm_status_change", {"run_id": 0}, room="collaboration_1", namespace=NAMESPACE)
        await first.emit(
            "algorithm_status_change", {"run_id": 1}, room="collaboration_1", namespace=NAMESPACE
        )
        await asyncio.sleep(0.3)
        return sinks, [dict(server.room_messages) for server in (first, second, late)]

    sinks, counts = _on_broker(scenario, ("one", "two", "three"))

    assert [sorted(sink.packets) for sink in sinks] == [_events(2)] * 3  # two publishers: any order
    # Each process heard the others' event once, and never its own.
    assert [count["received"] for count in counts] == [1, 2, 1]


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_stopped_process_is_forgotten_and_its_keys_unbound():
    staying, stopping = _server("one"), _server("two")

    async def scenario() -> tuple[set[str], set[str], set[str]]:
        await _settled(staying, stopping)
        await _member(staying, "collaboration_1")
        known = set(staying.peers)
        stopping.stop()
        await asyncio.sleep(0.3)
        groups = set(channel_layers["one"]._multi_queue._local_groups)
        return known, set(staying.peers), groups

    known, after, groups = _on_broker(scenario, ("one", "two"))

    assert known == {stopping.process} and after == set()
    assert from_process(room_group(NAMESPACE, "collaboration_1"), stopping.process) not in groups


# --- two live processes ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def metered(live_db, live_folder):
    """Two daphne processes on the live database and RabbitMQ, with their metrics."""
    env = {"V6_RABBITMQ_URI": os.environ["V6_RABBITMQ_URI"], "V6_METRICS": "1"}
    for first in _daphne(live_db, live_folder, **env):
        for second in _daphne(live_db, live_folder, **env):
            yield first, second


def _room_messages(url: str) -> dict[str, int]:
    text = requests.get(f"{url}/api/metrics", timeout=10).text
    found = re.findall(
        r'^vantage6_socket_room_messages_total\{direction="(\w+)"\} (\d+)$', text, re.MULTILINE
    )
    return {direction: int(count) for direction, count in found}


@pytest.mark.live
def test_a_node_event_is_published_once_and_received_once_across_two_processes(metered, live_world, sockets):
    a, b = metered
    # A node an earlier test left online (a stopping server tells no one) and silent would be taken offline
    # by the heartbeat sweep of a or b, whose notice to its two rooms would count here: it is taken now.
    Authenticatable.objects.using(LIVE).filter(type="node", status=AuthStatus.ONLINE).update(
        status=AuthStatus.OFFLINE
    )
    sender = sockets(a.url, token(live_world.node_a))
    sender.wait_ready(live_world.node_a)
    listener = sockets(b.url, token(live_world.node_b))
    listener.wait_ready(live_world.node_b)
    task = Task(
        collaboration=live_world.collab_ab,
        image="i",
        job_id=random.randrange(10**9),
        init_org=live_world.org_a,
    )
    task.save(using=LIVE)
    run = Run(task=task, organization=live_world.org_a)
    run.save(using=LIVE)
    before = [_room_messages(a.url), _room_messages(b.url)]

    for status in ("active", "completed") * 5:  # one at a time
        sender.emit("algorithm_status_change", {"run_id": run.pk, "status": status})
        assert listener.wait_for("algorithm_status_change")["status"] == status
        assert sender.wait_for("algorithm_status_change")["status"] == status

    after = [_room_messages(a.url), _room_messages(b.url)]
    assert [after[i]["published"] - before[i]["published"] for i in (0, 1)] == [10, 0]
    assert [after[i]["received"] - before[i]["received"] for i in (0, 1)] == [0, 10]  # never its own

    # A REST request's event too: the process that serves it delivers it to its own sockets itself.
    task_id = create_task(a.url, make_user(live_world.org_a, roles=("Researcher",)), live_world.collab_ab)
    for client in (sender, listener):
        assert client.wait_for("new_task") == {"id": task_id, "parent_id": None}
    final = [_room_messages(a.url), _room_messages(b.url)]
    assert final[0]["received"] == after[0]["received"]
    assert final[1]["received"] == after[1]["received"] + 1  # new_task to node_b's organization room


# --- siblings: the processes of one `vantage6.serve` ------------------------------------------------------
def _siblings(*servers: Server) -> Callable[[], Awaitable[None]]:
    """Links ``servers`` as one ``vantage6.serve`` links its processes (a socket pair each two); the
    coroutine function that starts the links in the running loop."""
    family = f"family-{random.randrange(10**9)}"
    ends: list[list[socket.socket]] = [[] for _ in servers]
    for first in range(len(servers)):
        for second in range(first + 1, len(servers)):
            one, other = socket.socketpair()
            ends[first].append(one)
            ends[second].append(other)

    async def link() -> None:
        for server, links in zip(servers, ends, strict=True):
            await server.link_siblings(Siblings(family, links))

    return link


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_siblings_pass_room_events_over_their_link_and_the_broker_carries_them_to_other_machines():
    one, two, elsewhere = _server("one"), _server("two"), _server("three")
    link = _siblings(one, two)

    async def scenario() -> tuple[list[Sink], list[dict]]:
        await link()
        await _settled(one, two, elsewhere)
        sinks = [await _member(server, "collaboration_1") for server in (one, two, elsewhere)]
        await _emit(one, 5)
        await _emit(two, 5, first=5)
        await _emit(elsewhere, 5, first=10)
        await asyncio.sleep(0.3)
        return sinks, [dict(server.room_messages) for server in (one, two, elsewhere)]

    sinks, counts = _on_broker(scenario, ("one", "two", "three"))

    assert [sorted(sink.packets) for sink in sinks] == [sorted(_events(15))] * 3  # each once
    # Each sibling sent its five over the link, and to the other machine's process through the broker;
    # it heard its sibling's over the link only, and the other machine's through the broker.
    for count in counts[:2]:
        assert count == {"published": 5, "received": 5, "to_siblings": 5, "from_siblings": 5}
    assert counts[2] == {"published": 5, "received": 10, **NO_SIBLINGS}


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_siblings_alone_on_the_broker_publish_nothing_to_it():
    one, two = _server("one"), _server("two")
    link = _siblings(one, two)

    async def scenario() -> tuple[list[Sink], list[dict]]:
        await link()
        await _settled(one, two)
        sinks = [await _member(one, "collaboration_1"), await _member(two, "collaboration_1")]
        await _emit(one, 10)
        await asyncio.sleep(0.3)
        return sinks, [dict(server.room_messages) for server in (one, two)]

    sinks, counts = _on_broker(scenario, ("one", "two"))

    assert [sink.packets for sink in sinks] == [_events(10)] * 2
    assert counts == [
        {"published": 0, "received": 0, "to_siblings": 10, "from_siblings": 0},
        {"published": 0, "received": 0, "to_siblings": 0, "from_siblings": 10},
    ]


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_stopping_siblings_events_through_the_rooms_group_reach_each_socket_once():
    one, two, elsewhere = _server("one"), _server("two"), _server("three")
    link = _siblings(one, two)

    async def scenario() -> list[Sink]:
        await link()
        await _settled(one, two, elsewhere)
        sinks = [await _member(server, "collaboration_1") for server in (one, two, elsewhere)]
        one.stop()  # it publishes to the room's group from now on, which its sibling is bound to too
        await _emit(one, 10)
        await asyncio.sleep(0.3)
        return sinks

    assert [sink.packets for sink in _on_broker(scenario, ("one", "two", "three"))] == [_events(10)] * 3


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_sibling_hears_every_event_emitted_after_its_join_returned():
    emitting, joining = _server("one"), _server("two")
    link = _siblings(emitting, joining)

    async def scenario() -> list[list[str]]:
        await link()
        await _settled(emitting, joining)
        return await _heard_after_joins(emitting, joining, emitter_in_room=False)

    assert _on_broker(scenario, ("one", "two")) == [_events(1)] * 20


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_siblings_pass_room_events_while_the_broker_is_absent():
    one, two = _server("one"), _server("two")
    link = _siblings(one, two)

    async def scenario() -> list[Sink]:
        await link()
        sinks = [await _member(one, "collaboration_1"), await _member(two, "collaboration_1")]
        await _emit(one, 5)
        await _emit(two, 5, first=5)
        await asyncio.sleep(0.2)
        return sinks

    sinks = _on_broker(scenario, ("one", "two"), host=ABSENT_BROKER)

    assert [sorted(sink.packets) for sink in sinks] == [sorted(_events(10))] * 2


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_sibling_gone_leaves_the_others_rooms_working():
    one, two, elsewhere = _server("one"), _server("two"), _server("three")
    link = _siblings(one, two)

    async def scenario() -> list[Sink]:
        await link()
        await _settled(one, two, elsewhere)
        sinks = [await _member(one, "collaboration_1"), await _member(elsewhere, "collaboration_1")]
        for writer in list(two.siblings._writers):
            writer.transport.abort()  # as when its process dies
        await asyncio.sleep(0.1)
        await _emit(one, 5)
        await asyncio.sleep(0.3)
        return sinks

    assert [sink.packets for sink in _on_broker(scenario, ("one", "two", "three"))] == [_events(5)] * 2


class _Noted:
    """A socket whose writes are noted in ``writes``."""

    def __init__(self, sock: socket.socket, writes: list[str]) -> None:
        self.sock = sock
        self.writes = writes

    def send(self, data: bytes) -> int:
        self.writes.append("websocket")
        return self.sock.send(data)


@pytest.mark.django_db  # the handshake's check runs where the database may be used
def test_a_room_event_goes_to_the_siblings_before_the_processes_own_websockets(monkeypatch):
    """The sibling passes the event on while this process writes its own sockets of the room."""
    one, two = _server("one"), _server("two")
    link = _siblings(one, two)
    writes: list[str] = []
    ours, peer = socket.socketpair()
    ours.setblocking(False)

    async def scenario() -> list[Sink]:
        await link()
        await _settled(one, two)
        there = await _member(two, "collaboration_1")
        consumer = WebsocketConsumer(server=one)
        transport = Transport(cast(socket.socket, _Noted(ours, writes)))
        websocket = Factory(lambda _path: consumer, max_message=1 << 20, scope_headers=()).buildProtocol(None)
        websocket._raw_query_string = b"EIO=4&transport=websocket"  # as daphne sets it
        websocket.makeConnection(transport)
        websocket.dataReceived(HANDSHAKE)
        await asyncio.sleep(0.1)
        transport.drain()  # the upgrade's answer and the OPEN packet
        await one.join(consumer.session, NAMESPACE, "collaboration_1")
        send = one.siblings.send  # type: ignore[union-attr]
        monkeypatch.setattr(one.siblings, "send", lambda *args: (writes.append("sibling"), send(*args)))
        await _emit(one, 1)
        await asyncio.sleep(0.2)
        return [there]

    try:
        there = _on_broker(scenario, ("one", "two"))
        assert cast(list[Sink], there)[0].packets == _events(1)
        assert writes == ["sibling", "websocket"]
        assert _events(1)[0].encode() in peer.recv(1 << 16)
    finally:
        ours.close()
        peer.close()
