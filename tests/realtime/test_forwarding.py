"""A long-polling request that lands on a process which does not own the session is answered by the
owner, through the channel layer; an owner that does not answer (it died) makes the session unknown
within a bound, so that the client starts over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
import requests
import websocket
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator, WebsocketCommunicator

from nodes.consumers import TasksNamespace, handshake_auth
from nodes.events import TASKS_NAMESPACE, collaboration_room
from nodes.models import SocketConnection
from tests.conftest import requires_services
from tests.realtime.helpers import PollingSession, in_memory, listening, recorded, token
from tests.realtime.live import Daphne
from vantage6.socketio import packets as p
from vantage6.socketio.consumers import PollingConsumer, WebsocketConsumer
from vantage6.socketio.server import PROCESSES, Namespace, Server
from vantage6.socketio.store import Session

SECRET = b"the deployment's secret"
# A forward bound far above what an answer given at once takes, however loaded the machine: a test that
# tells "answered at once" from "waited the bound" asserts a third of it.
PATIENT = 30


def _server(forward_timeout: float = 0.5) -> Server:
    return Server(namespaces={"/tasks": Namespace()}, secret=SECRET, forward_timeout=forward_timeout)


def _get(server: Server, sid: str) -> HttpCommunicator:
    path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    return HttpCommunicator(PollingConsumer.as_asgi(server=server), "GET", path)


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_get_on_another_process_waits_there_for_the_owners_packets():
    owner, other = _server(), _server()

    async def scenario() -> tuple[dict, float]:
        session, _ = await owner.open_session("polling", {})
        await other.listening()
        started = time.monotonic()
        response = asyncio.create_task(_get(other, session.sid).get_response(timeout=5))
        await asyncio.sleep(1)  # longer than the forward bound: the owner holds the GET
        await owner.send(session, [p.event_packet("/tasks", "hello")])
        return await response, time.monotonic() - started

    response, elapsed = in_memory(scenario)

    assert (response["status"], response["body"]) == (200, b'42/tasks,["hello"]')
    assert elapsed >= 1


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_request_for_a_session_of_a_dead_process_is_unknown_within_the_bound():
    dead, survivor = _server(), _server()

    async def scenario() -> tuple[dict, float]:
        await survivor.listening()
        dead.channel = await survivor.layer.new_channel()  # nobody reads it any more
        sid = dead._new_sid()
        started = time.monotonic()
        return await _get(survivor, sid).get_response(timeout=5), time.monotonic() - started

    response, elapsed = in_memory(scenario)

    assert response["status"] == 400
    assert json.loads(response["body"]) == {"code": 1, "message": "Session ID unknown"}
    assert 0.5 <= elapsed < 2


@pytest.mark.django_db  # the handshake's check may use the database
def test_requests_on_their_way_to_a_process_that_ends_gracefully_are_answered_when_it_says_so():
    """A GET or an upgrade forwarded just before the owner's last read waits no bound once it ended."""
    gone, survivor = (Server(namespaces={}, secret=SECRET, forward_timeout=PATIENT) for _ in range(2))

    async def scenario() -> tuple[dict, Session | None, float]:
        await survivor.listening()
        gone.channel = await survivor.layer.new_channel()  # nobody reads it any more
        response = asyncio.create_task(_get(survivor, gone._new_sid()).get_response(timeout=2 * PATIENT))
        taken = asyncio.create_task(survivor.take_over(gone._new_sid(), ""))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        ended = {"type": "eio.gone", "process": gone.process, "channel": gone.channel}
        await survivor.layer.group_send(PROCESSES, ended)
        return await response, await taken, time.monotonic() - started

    response, taken, elapsed = in_memory(scenario)

    assert response["status"] == 400
    assert json.loads(response["body"]) == {"code": 1, "message": "Session ID unknown"}
    assert taken is None
    assert elapsed < PATIENT / 3
    assert survivor.pending == {}


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_request_for_a_session_that_moved_to_a_process_that_ended_is_unknown_at_once():
    """The owner of a session taken over by a process that since ended gracefully does not pass a late
    request of it on to that process (it would wait the bound for nothing)."""
    owner, other = (Server(namespaces={}, secret=SECRET, forward_timeout=PATIENT) for _ in range(2))

    async def scenario() -> tuple[dict, float]:
        session, _ = await owner.open_session("polling", {})
        await other.listening()
        gone = await owner.layer.new_channel()  # the process it moved to: nobody reads it any more
        takeover = {"type": "eio.takeover", "sid": session.sid, "address": "", "reply": gone, "id": "t"}
        await owner.layer.send(owner.channel, takeover)
        ended = {"type": "eio.gone", "process": "ended", "channel": gone}
        await owner.layer.group_send(PROCESSES, ended)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        return await _get(other, session.sid).get_response(timeout=2 * PATIENT), time.monotonic() - started

    response, elapsed = in_memory(scenario)

    assert response["status"] == 400
    assert json.loads(response["body"]) == {"code": 1, "message": "Session ID unknown"}
    assert elapsed < PATIENT / 3


@pytest.mark.parametrize("get_before_the_stop", [True, False])
@pytest.mark.django_db  # the handshake's check may use the database
def test_a_stopping_owner_sends_its_long_polling_clients_elsewhere_at_once(get_before_the_stop):
    """A GET forwarded to a stopping owner (held there, or arriving since: a proxy retries a GET the
    stopping process dropped on the other one) must not wait for the owner's end: its client starts
    over with a live process before the owner is taken for dead and its node announced offline."""
    owner, other = _server(PATIENT), _server(PATIENT)

    async def scenario() -> tuple[dict, float, bool]:
        session, _ = await owner.open_session("polling", {})
        await other.listening()
        if get_before_the_stop:
            response = asyncio.create_task(_get(other, session.sid).get_response(timeout=2 * PATIENT))
            await asyncio.sleep(0.2)  # held by the owner
        started = time.monotonic()
        owner.stop()
        if not get_before_the_stop:
            response = asyncio.create_task(_get(other, session.sid).get_response(timeout=2 * PATIENT))
        return await response, time.monotonic() - started, session.sid in owner.sessions

    response, elapsed, kept = in_memory(scenario)

    assert response["status"] == 400
    assert json.loads(response["body"]) == {"code": 1, "message": "Session ID unknown"}
    assert elapsed < PATIENT / 3  # the owner answered: not the forward bound
    assert kept  # not ended there: its node is not announced offline by the stop


@pytest.mark.parametrize("transport", ["polling", "websocket"])
@pytest.mark.django_db  # the handshake's check may use the database
def test_a_stopping_process_opens_no_session(transport):
    """A handshake that still reaches a stopping process (over a proxy's kept-alive connection) is
    refused, and its client connects again at once, to a live process: a session opened there would be
    dropped moments after it connected, and a python-socketio client dropped while it ends a reconnection
    connects no more."""
    server = _server()

    async def scenario() -> tuple[int, bytes | None, list[str]]:
        await server.listening()
        server.stop()
        path = f"/socket.io/?EIO=4&transport={transport}"
        if transport == "polling":
            response = await HttpCommunicator(
                PollingConsumer.as_asgi(server=server), "GET", path
            ).get_response()
            return response["status"], response["body"], list(server.sessions)
        socket = WebsocketCommunicator(WebsocketConsumer.as_asgi(server=server), path)
        connected, _ = await socket.connect()
        return (101 if connected else 403), None, list(server.sessions)  # as the server answers the upgrade

    status, body, sessions = in_memory(scenario)

    if transport == "polling":
        assert status == 503
        assert json.loads(body) == {"code": 3, "message": "This server is stopping; connect again."}
    else:
        assert status == 403  # refused before it was accepted
    assert sessions == []


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_stopping_process_takes_no_session_over():
    """An upgrade that still reaches a stopping process is refused: the session stays with its live owner
    (the client keeps polling it), instead of moving to a websocket dropped moments later."""
    owner, stopping = _server(), _server()

    async def scenario() -> tuple[bool, Session | None, dict]:
        session, _ = await owner.open_session("polling", {})
        await stopping.listening()
        stopping.stop()
        path = f"/socket.io/?EIO=4&transport=websocket&sid={session.sid}"
        socket = WebsocketCommunicator(WebsocketConsumer.as_asgi(server=stopping), path)
        connected, _ = await socket.connect()
        await owner.send(session, [p.event_packet("/tasks", "hello")])
        return connected, owner.sessions.get(session.sid), await _get(owner, session.sid).get_response()

    upgraded, kept, polled = in_memory(scenario)

    assert not upgraded
    assert kept is not None and kept.transport == "polling"
    assert (polled["status"], polled["body"]) == (200, b'42/tasks,["hello"]')  # still polling its owner


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_stopping_process_forwards_no_get_whose_answer_it_could_drop():
    """A GET that reaches a stopping process for another one's session (over a proxy's kept-alive
    connection) is answered at once, with no packet: forwarded, its owner could hand it packets just as
    the stop drops the long polls the process holds (``vantage6.serve``), and they were lost (a node's
    ``sync`` and room joins right after its reconnect, say). They wait at the owner for the next GET."""
    owner, stopping = _server(), _server()

    async def scenario() -> tuple[dict, dict]:
        session, _ = await owner.open_session("polling", {})
        await stopping.listening()
        await owner.send(session, [p.event_packet("/tasks", "hello")])  # waiting for the client's GET
        stopping.stop()
        through_stopping = await _get(stopping, session.sid).get_response(timeout=1)
        return through_stopping, await _get(owner, session.sid).get_response(timeout=1)

    through_stopping, through_owner = in_memory(scenario)

    assert (through_stopping["status"], through_stopping["body"]) == (200, b"6")  # a NOOP: poll again
    assert (through_owner["status"], through_owner["body"]) == (200, b'42/tasks,["hello"]')


@pytest.mark.django_db  # database_sync_to_async closes the thread's old connections
def test_a_dead_process_is_buried_only_after_its_forwarded_requests_gave_up_on_it():
    """The clients of a killed process learn it within the forward bound (a forwarded GET it held: the
    ping interval and the forward timeout) and start over elsewhere: burying it sooner announces their
    nodes offline while they reconnect."""
    ages: list[float] = []

    class Liveness:
        def silent(self, age: float) -> list[str]:
            ages.append(age)
            return []

    server = Server(namespaces={}, secret=SECRET, ping_interval=2, ping_timeout=2, liveness=Liveness())

    async_to_sync(server.sweep)()

    # A process's last beat is at most one ping interval before its death.
    reconnected_by = server.ping_interval + server.forward_timeout + server.ping_interval
    assert ages[0] - server.ping_interval >= reconnected_by


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_sid_signed_with_another_secret_is_not_forwarded():
    other = _server()
    stranger = Server(namespaces={"/tasks": Namespace()}, secret=b"another deployment")

    async def scenario() -> tuple[dict, list[tuple]]:
        session, _ = await stranger.open_session("polling", {})
        await other.listening()
        sent = recorded(other.layer, "send")
        return await _get(other, session.sid).get_response(timeout=5), sent

    response, sent = in_memory(scenario)

    assert response["status"] == 400 and json.loads(response["body"])["code"] == 1
    assert sent == []


def _node_server() -> Server:
    return Server(
        namespaces={TASKS_NAMESPACE: TasksNamespace()},
        authenticate=handshake_auth,
        secret=SECRET,
        forward_timeout=0.5,
    )


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside one
def test_an_upgrade_on_another_process_takes_the_session_over_with_its_rooms(world):
    owner, other = _node_server(), _node_server()
    room = collaboration_room(world.collab_ab.pk)
    headers = {"authorization": f"Bearer {token(world.node_a)}"}

    async def scenario() -> tuple[str, Session, list[str], dict]:
        session, _ = await owner.open_session("polling", headers)
        await owner.receive(session, f"0{TASKS_NAMESPACE},{{}}")  # connected over polling: in its rooms
        session.outbox.clear()
        await other.listening()
        taken = await other.take_over(session.sid, "")
        await other.emit("new_task", {"id": 7}, room=room, namespace=TASKS_NAMESPACE)
        await asyncio.sleep(0.2)
        # A request that still reaches the first process follows the session.
        late = await _get(owner, session.sid).get_response(timeout=5)
        return session.sid, taken, owner_state(owner), late

    def owner_state(server: Server) -> list[str]:
        return [*server.sessions, *server.room_members]

    sid, taken, left, late = in_memory(scenario)

    assert taken.sid == sid and taken.namespaces[TASKS_NAMESPACE]["state"]["kind"] == "node"
    assert sorted(room for _, room in taken.rooms) == sorted(
        ["all_nodes", room, f"{room}_organization_{world.org_a.pk}"]
    )
    assert left == []  # the first process keeps nothing of it
    assert other.sessions == {sid: taken}
    assert late["status"] == 200
    assert late["body"].decode().split(p.RECORD_SEPARATOR) == [
        f'42{TASKS_NAMESPACE},["sync"]',  # it may have missed an event while it moved
        f'42{TASKS_NAMESPACE},["new_task",{{"id":7}}]',
    ]
    assert SocketConnection.objects.get(identity_id=world.node_a.pk).process == other.process


@pytest.mark.live
@requires_services("rabbitmq")
def test_a_session_of_a_process_that_stopped_gracefully_is_unknown_at_once(live_db, live_folder, live_world):
    """A node's reconnect during a rolling restart: its next GET, or its upgrade, lands on the survivor,
    which knows the owner ended (``eio.gone``) and answers at once instead of waiting the forward bound
    (5 s) for a process that is no more."""
    env = live_db.process_env(V6_RABBITMQ_URI=os.environ["V6_RABBITMQ_URI"])
    stopped, survivor = Daphne(env, live_folder), Daphne(env, live_folder)
    try:
        listening(survivor.url)
        polled = PollingSession([stopped.url], token(live_world.node_a))
        upgraded = PollingSession([stopped.url], token(live_world.node_a))

        stopped.process.send_signal(signal.SIGTERM)
        assert stopped.process.wait(30) == 0

        started = time.monotonic()
        response = requests.get(
            f"{survivor.url}/socket.io/",
            params={"EIO": "4", "transport": "polling", "sid": polled.sid},
            timeout=30,
        )
        polled_in = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(
                f"ws://127.0.0.1:{survivor.port}/socket.io/?EIO=4&transport=websocket&sid={upgraded.sid}",
                timeout=30,
            )
        upgraded_in = time.monotonic() - started
    finally:
        for daphne in (stopped, survivor):
            daphne.show_log()
            daphne.stop()

    assert (response.status_code, response.json()) == (400, {"code": 1, "message": "Session ID unknown"})
    assert refused.value.status_code == 403
    assert polled_in < 1 and upgraded_in < 1, (polled_in, upgraded_in)  # the bound is 5 s
