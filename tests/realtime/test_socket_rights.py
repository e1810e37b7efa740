"""An open socket follows the rights of its user or node: whoever loses the right to see a
collaboration stops hearing its events at once, without reconnecting; whoever gains it starts.

Each attack: a socket hears an event of collaboration AB; the admin takes the right away; the next
event of AB reaches another member's socket, not the attacker's. On two instances the change is made
on the one the socket is not connected to: it reaches the socket's process through the broker.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass

import pytest
import requests
from channels.db import database_sync_to_async
from django.db import OperationalError, transaction

from accounts.models import Role, Rule, User
from accounts.signals import rights_changed
from nodes import consumers
from nodes.events import TASKS_NAMESPACE, collaboration_room
from nodes.models import Node, SocketConnection
from tests import factories
from tests.conftest import requires_services
from tests.realtime.helpers import LiveWorld, NodeSocket, Sink, create_task, in_memory, make_user, token
from tests.realtime.live import LIVE
from tests.realtime.test_socket_revocation import assert_hears_no_new_task
from vantage6.socketio.server import Server

live = pytest.mark.live


@pytest.fixture(params=["one server", pytest.param("two instances", marks=requires_services("rabbitmq"))])
def hosts(request) -> tuple[str, str]:
    """Where the sockets connect, and where the admin and the researchers call the API."""
    if request.param == "one server":
        server = request.getfixturevalue("server")
        return server.url, server.url
    first, second = request.getfixturevalue("instances")
    return first.url, second.url


def event_rule(using: str = LIVE) -> Rule:
    return Rule.objects.using(using).get(name="event", scope="COLLABORATION", operation="RECEIVE")


def _call(method: str, url: str, bearer: str, **body: object) -> None:
    headers = {"Authorization": f"Bearer {bearer}"}
    response = requests.request(method, url, json=body or None, headers=headers, timeout=30)
    assert response.ok, response.text


def left(room: str):
    return lambda text: isinstance(text, str) and text.endswith(f"left room {room}")


def assert_hear_new_task(api: str, world: LiveWorld, *sockets: NodeSocket) -> None:
    """A task created now in collaboration AB reaches each of ``sockets``."""
    researcher = make_user(world.org_b, roles=("Researcher",))
    task_id = create_task(api, researcher, world.collab_ab, [world.org_b])
    for socket in sockets:
        assert socket.wait_for("new_task") == {"id": task_id, "parent_id": None}


@dataclass
class Scene:
    """A socket of ``identity`` that hears the events of collaboration AB, and node B's (the witness);
    the admin (a root user, ``admin`` its token) calls the API at ``api``."""

    identity: User | Node
    socket: NodeSocket
    witness: NodeSocket
    world: LiveWorld
    api: str
    admin: str
    role: Role | None = None  # the user's role holding the event rule, if not given to him directly

    def assert_left_collaboration(self) -> None:
        """The socket is told it left collaboration AB's room, and hears no more of its events."""
        self.socket.wait_for("message", where=left(f"collaboration_{self.world.collab_ab.pk}"), timeout=5)
        assert_hears_no_new_task(self.socket, self.api, self.world, self.witness)


def scene(hosts: tuple[str, str], world: LiveWorld, sockets, identity: User | Node) -> Scene:
    connect, api = hosts
    socket = sockets(connect, token(identity))
    if isinstance(identity, Node):
        socket.wait_ready(identity)
    else:
        socket.wait_joined()
    witness = sockets(connect, token(world.node_b))
    witness.wait_ready(world.node_b)
    assert_hear_new_task(api, world, socket, witness)
    admin = token(make_user(world.org_a, roles=("Root",)))
    return Scene(identity, socket, witness, world, api, admin)


def role_taken_from_user(scene: Scene) -> None:
    _call("PATCH", f"{scene.api}/api/user/{scene.identity.pk}", scene.admin, roles=[])


def rule_taken_from_role(scene: Scene) -> None:
    _call("PATCH", f"{scene.api}/api/role/{scene.role.pk}", scene.admin, rules=[])


def rule_removed_from_role(scene: Scene) -> None:
    _call("DELETE", f"{scene.api}/api/role/{scene.role.pk}/rule/{event_rule().pk}", scene.admin)


def role_deleted(scene: Scene) -> None:
    _call("DELETE", f"{scene.api}/api/role/{scene.role.pk}?delete_dependents=1", scene.admin)


def rule_taken_from_user(scene: Scene) -> None:
    _call("PATCH", f"{scene.api}/api/user/{scene.identity.pk}", scene.admin, rules=[])


def organization_left_collaboration(scene: Scene) -> None:
    url = f"{scene.api}/api/collaboration/{scene.world.collab_ab.pk}"
    _call("PATCH", url, scene.admin, organization_ids=[scene.world.org_b.pk])


def organization_removed_from_collaboration(scene: Scene) -> None:
    url = f"{scene.api}/api/collaboration/{scene.world.collab_ab.pk}/organization"
    _call("DELETE", url, scene.admin, id=scene.world.org_a.pk)


THROUGH_ROLE = [role_taken_from_user, rule_taken_from_role, rule_removed_from_role, role_deleted]
DIRECT = [rule_taken_from_user, organization_left_collaboration, organization_removed_from_collaboration]


@live
@pytest.mark.parametrize("withdraw", THROUGH_ROLE + DIRECT, ids=lambda withdraw: withdraw.__name__)
def test_a_user_whose_right_is_withdrawn_stops_hearing_the_collaboration(
    hosts, live_world, sockets, withdraw
):
    role = None
    if withdraw in THROUGH_ROLE:
        user = make_user(live_world.org_a)
        role = Role.objects.using(LIVE).create(
            name=f"listener-{uuid.uuid4().hex[:8]}", organization=live_world.org_a
        )
        role.rules.add(event_rule())
        user.roles.add(role)
    else:
        user = make_user(live_world.org_a, event_scope="COLLABORATION")
    listener = scene(hosts, live_world, sockets, user)
    listener.role = role

    withdraw(listener)

    listener.assert_left_collaboration()


@live
def test_a_user_granted_the_right_while_connected_hears_the_next_event(hosts, live_world, sockets):
    connect, api = hosts
    user = make_user(live_world.org_a)
    socket = sockets(connect, token(user))
    assert "message" not in [name for name, _ in socket.received(1)]  # connected, in no room
    admin = token(make_user(live_world.org_a, roles=("Root",)))

    _call("PATCH", f"{api}/api/user/{user.pk}", admin, rules=[event_rule().pk])

    socket.wait_joined(timeout=5)
    assert_hear_new_task(api, live_world, socket)


@live
def test_a_node_whose_organization_leaves_the_collaboration_stops_hearing_it(hosts, live_world, sockets):
    node = scene(hosts, live_world, sockets, live_world.node_a)

    organization_removed_from_collaboration(node)

    node.assert_left_collaboration()


@live
def test_a_node_follows_its_collaboration_without_reconnecting(hosts, live_world, sockets):
    node = scene(hosts, live_world, sockets, live_world.node_a)
    url = f"{node.api}/api/collaboration/{live_world.collab_ab.pk}/node"

    _call("DELETE", url, node.admin, id=live_world.node_a.pk)

    node.assert_left_collaboration()

    _call("POST", url, node.admin, id=live_world.node_a.pk)

    node.socket.wait_for("sync", timeout=5)  # it fetches the open work of its collaboration
    assert_hear_new_task(node.api, live_world, node.socket)


# --- a change while a socket connects --------------------------------------------------------------------
def _events(sink: Sink) -> list[list]:
    prefix = f"42{TASKS_NAMESPACE},"
    return [json.loads(packet[len(prefix) :]) for packet in sink.packets if packet.startswith(prefix)]


@pytest.mark.django_db(transaction=True)  # the sockets' database work runs on a thread of its own
def test_a_change_committed_while_a_socket_connects_moves_it_once_connected(world, monkeypatch):
    """The socket derived its rooms before the change was committed, and the process handled the change's
    recheck before the socket had an owner: once connected, it leaves the room it no longer reaches."""
    rule = event_rule("default")
    user = factories.make_user(world.org_a, rules=[rule])
    tokens = {"user": token(user), "witness": token(world.node_a)}
    server = Server(
        namespaces={TASKS_NAMESPACE: consumers.TasksNamespace()},
        authenticate=consumers.handshake_auth,
        verify=consumers.ended_sessions,
        secret=b"s",
    )
    handled = threading.Event()
    on_message = server._on_message

    async def noting(message: dict) -> None:
        await on_message(message)
        if message["type"] == "sio.recheck":
            handled.set()

    monkeypatch.setattr(server, "_on_message", noting)
    identify = consumers.identify

    def identify_then_change(auth: dict, process: str) -> object:
        identity = identify(auth, process)  # with the room of the rule
        with transaction.atomic():
            user.rules.remove(rule)
            rights_changed.send(sender=User, identities=[user.pk])
        assert handled.wait(10)  # the process is through with the recheck
        return identity

    async def connect(bearer: str) -> Sink:
        sink = Sink()
        session, _ = await server.open_session("websocket", {"authorization": f"Bearer {bearer}"}, sink)
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
        return sink

    room = collaboration_room(world.collab_ab.pk)

    async def scenario() -> tuple[Sink, Sink]:
        witness = await connect(tokens["witness"])
        monkeypatch.setattr(consumers, "identify", identify_then_change)
        socket = await connect(tokens["user"])
        await server.emit("new_task", {"id": 1, "parent_id": None}, room=room, namespace=TASKS_NAMESPACE)
        return socket, witness

    socket, witness = in_memory(scenario)

    assert ["message", f"{user.username} left room {room}"] in _events(socket)
    assert "new_task" not in [event[0] for event in _events(socket)]
    assert ["new_task", {"id": 1, "parent_id": None}] in _events(witness)


@pytest.mark.django_db(transaction=True)  # the sockets' database work runs on a thread of its own
def test_a_recheck_the_database_cannot_answer_is_retried_until_it_can(world, monkeypatch):
    """The database is away when the recheck comes (after the broker came back, say): the socket still
    leaves the room it no longer reaches, at a housekeeping round once the database answers again."""
    rule = event_rule("default")
    user = factories.make_user(world.org_a, rules=[rule])
    server = Server(
        namespaces={TASKS_NAMESPACE: consumers.TasksNamespace()},
        authenticate=consumers.handshake_auth,
        verify=consumers.ended_sessions,
        secret=b"s",
        housekeeping_interval=0.05,
    )
    places = consumers.places
    down = threading.Event()

    def unless_down(kinds: dict[int, str]) -> dict[int, dict]:
        if down.is_set():
            raise OperationalError("the database is away")
        return places(kinds)

    monkeypatch.setattr(consumers, "places", unless_down)
    room = collaboration_room(world.collab_ab.pk)
    headers = {"authorization": f"Bearer {token(user)}"}

    async def scenario() -> Sink:
        sink = Sink()
        session, _ = await server.open_session("websocket", headers, sink)
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
        await database_sync_to_async(user.rules.remove)(rule)
        down.set()
        server._start_recheck(None)  # as when the broker is back
        await asyncio.sleep(0.2)
        assert ["message", f"{user.username} left room {room}"] not in _events(sink)
        down.clear()
        housekeeping = asyncio.get_running_loop().create_task(server._housekeeping_forever())
        try:
            for _ in range(100):
                if ["message", f"{user.username} left room {room}"] in _events(sink):
                    break
                await asyncio.sleep(0.05)
        finally:
            housekeeping.cancel()
        return sink

    sink = in_memory(scenario)

    assert ["message", f"{user.username} left room {room}"] in _events(sink)


@pytest.mark.django_db(transaction=True)  # the sockets' database work runs on a thread of its own
def test_a_session_whose_connect_outlasts_the_wait_of_the_process_asking_for_it_stays(world):
    """Another process asks for a session (its websocket upgrade landed there) while the session connects:
    it is handed over once connected, but not after the asking process gave up waiting (it would be
    lost): it stays, and its client goes on polling."""
    server = Server(
        namespaces={TASKS_NAMESPACE: consumers.TasksNamespace()},
        authenticate=consumers.handshake_auth,
        secret=b"s",
        forward_timeout=0.2,
    )
    headers = {"authorization": f"Bearer {token(world.node_a)}"}

    async def scenario() -> tuple[dict, bool]:
        session, _ = await server.open_session("polling", headers)
        asking = await server.layer.new_channel()
        async with server._arrival(session.sid):  # a connect that does not end in time
            takeover = {"type": "eio.takeover", "sid": session.sid, "reply": asking, "id": "r", "address": ""}
            await server._on_message(takeover)
            answer = await asyncio.wait_for(server.layer.receive(asking), 1)
        return answer, server.sessions.get(session.sid) is session

    answer, kept = in_memory(scenario)

    assert answer["state"] is None
    assert kept


@pytest.mark.django_db(transaction=True)  # the sockets' database work runs on a thread of its own
def test_a_session_handed_over_before_its_scheduled_recheck_ran_is_rechecked_by_its_new_process(world):
    """The recheck's task has not run yet when another process takes the session over: the new process
    is told to recheck it (the task finds the session gone). The user is in no room yet, so that the
    handover has no binding to wait for (a recheck after a rule was given to him would join him to one)."""
    server = Server(
        namespaces={TASKS_NAMESPACE: consumers.TasksNamespace()},
        authenticate=consumers.handshake_auth,
        verify=consumers.ended_sessions,
        secret=b"s",
    )
    user = factories.make_user(world.org_a)
    headers = {"authorization": f"Bearer {token(user)}"}

    async def scenario() -> dict:
        session, _ = await server.open_session("polling", headers)
        await server.receive(session, f"0{TASKS_NAMESPACE},{{}}")
        asking = await server.layer.new_channel()
        server._start_recheck({session.owner})
        await server._hand_over(
            {"type": "eio.takeover", "sid": session.sid, "reply": asking, "id": "r", "address": ""}
        )
        return await asyncio.wait_for(server.layer.receive(asking), 1)

    answer = in_memory(scenario)

    assert answer["state"]["owner"] == f"user:{user.pk}"
    assert answer["recheck"] is True


# --- cost ------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_rights_change_finds_the_connected_identities_it_touches_in_one_query(
    world, monkeypatch, django_assert_num_queries, django_capture_on_commit_callbacks
):
    role = Role.objects.create(name="listeners", organization=world.org_a)
    holders = [factories.make_user(world.org_a, "listeners") for _ in range(3)]
    member_b = factories.make_user(world.org_b)
    for identity in [*holders[:2], member_b, world.node_b, world.node_c]:
        SocketConnection.objects.create(identity_id=identity.pk, generation="g")
    rechecked = []
    monkeypatch.setattr(consumers, "recheck_after_commit", rechecked.append)

    # None before the commit: a socket connecting until then is found as well.
    with django_assert_num_queries(0), django_capture_on_commit_callbacks() as committed:
        consumers.follow_rights(roles=[role.pk], organizations=[world.org_b.pk])
    with django_assert_num_queries(1):
        for callback in committed:
            callback()

    # Not holders[2] nor node C: never connected, or not touched.
    touched = [f"user:{user.pk}" for user in [*holders[:2], member_b]]
    assert rechecked == [sorted([*touched, f"node:{world.node_b.pk}"])]


@pytest.mark.django_db
def test_a_recheck_derives_the_rooms_of_every_socket_in_one_query_per_kind(world, django_assert_num_queries):
    listeners = [factories.make_user(world.org_a, rules=[event_rule("default")]) for _ in range(3)]
    deaf = factories.make_user(world.org_a)
    world.collab_ab.organizations.remove(world.org_b)  # node B's collaboration no longer has its organization
    nodes = [world.node_a, world.node_b, world.node_c]
    kinds = {**{user.pk: "user" for user in [*listeners, deaf]}, **{node.pk: "node" for node in nodes}}
    consumers.places(kinds)  # the nodes' rules are loaded once per process

    with django_assert_num_queries(2):
        found = consumers.places(kinds)

    ab, c = world.collab_ab.pk, world.collab_c.pk
    assert [found[user.pk] for user in listeners] == [{"rooms": [f"collaboration_{ab}"]}] * 3
    assert found[deaf.pk] == {"rooms": []}
    assert found[world.node_a.pk] == {
        "collaboration_id": ab,
        "rooms": ["all_nodes", f"collaboration_{ab}", f"collaboration_{ab}_organization_{world.org_a.pk}"],
    }
    assert found[world.node_b.pk] == {"collaboration_id": ab, "rooms": ["all_nodes"]}
    assert found[world.node_c.pk]["rooms"][1] == f"collaboration_{c}"
