"""A change of rights is answered only once every server process moved the sockets it touches: an event
published after the answer (a task another member creates, through another process) never reaches a
socket that lost the right to hear it. Repeated, since without that wait the event outruns the change only
now and then."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.utils import timezone

from accounts.models import Role
from nodes.models import SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import (
    LiveWorld,
    NodeSocket,
    create_task,
    joined,
    make_user,
    process_of,
    token,
)
from tests.realtime.live import LIVE, Daphne
from tests.realtime.test_socket_rights import _call, event_rule

pytestmark = pytest.mark.live

ROUNDS = 20


@pytest.fixture(scope="module")
def two_processes(live_db, live_folder):
    """One server of two processes (siblings, linked directly) with RabbitMQ."""
    server = Daphne(
        live_db.process_env(V6_RABBITMQ_URI=os.environ["V6_RABBITMQ_URI"]), live_folder, workers=2
    )
    yield server
    server.stop()
    server.show_log()


@pytest.fixture(
    params=[
        "one process",
        pytest.param("replicas", marks=requires_services("rabbitmq")),
        pytest.param("siblings", marks=requires_services("rabbitmq")),
    ]
)
def hosts(request) -> tuple[str, str]:
    """Where the sockets connect, and where the changes and the tasks are made: the one process of an
    in-memory server, another replica, or whichever process of the server takes the request."""
    if request.param == "one process":
        server = request.getfixturevalue("server")
        return server.url, server.url
    if request.param == "replicas":
        first, second = request.getfixturevalue("instances")
        return first.url, second.url
    request.getfixturevalue("broker_only")
    server = request.getfixturevalue("two_processes")
    return server.url, server.url


def _new_task_heard(world: LiveWorld, api: str, witness: NodeSocket, *deaf: NodeSocket) -> list[int]:
    """A task of collaboration AB created now: the witness hears it; which of ``deaf`` heard it too."""
    task_id = create_task(api, make_user(world.org_b, roles=("Researcher",)), world.collab_ab, [world.org_b])
    assert witness.wait_for("new_task", where=lambda data: data["id"] == task_id)["id"] == task_id
    # The witness's process delivered it to the sockets there in the same turn; the other's meanwhile.
    return [
        index
        for index, socket in enumerate(deaf)
        for name, data in socket.received(0.2)
        if name == "new_task" and data["id"] == task_id
    ]


def _rounds(
    world: LiveWorld,
    sockets,
    hosts: tuple[str, str],
    removed: list[NodeSocket],
    path: str,
    take: tuple[str, dict],
    give: tuple[str, dict],
) -> None:
    """``ROUNDS`` times: ``take`` (a method and body of a root's request to ``path``) removes the sockets
    of ``removed``, connected to ``hosts[0]``, from collaboration AB's events, and a task created after
    its answer reaches none of them; ``give`` returns them."""
    connect, api = hosts
    admin = token(make_user(world.org_a, roles=("Root",)))
    witness = _witness(sockets, connect, world, removed[0])
    heard = []
    for turn in range(ROUNDS):
        _call(take[0], f"{api}{path}", admin, **take[1])
        heard += [(turn, index) for index in _new_task_heard(world, api, witness, *removed)]
        _call(give[0], f"{api}{path}", admin, **give[1])
        for socket in removed:
            socket.wait_for("message", where=joined)
    assert heard == []


def _witness(sockets, connect: str, world: LiveWorld, near: NodeSocket) -> NodeSocket:
    """Node B's socket, on the process of ``near``: once it heard an event, so did ``near``'s process."""
    for _ in range(32):
        witness = sockets(connect, token(world.node_b), transports=["websocket"])
        if process_of(witness) == process_of(near):
            witness.wait_ready(world.node_b)
            return witness
        witness.close()
    raise AssertionError("no socket landed on the process of the other")


def test_an_organization_removed_from_a_collaboration_hears_none_of_its_later_events(
    hosts, live_world, sockets
):
    member = make_user(live_world.org_a, event_scope="COLLABORATION")
    node = sockets(hosts[0], token(live_world.node_a), transports=["websocket"])
    user = sockets(hosts[0], token(member), transports=["websocket"])
    node.wait_ready(live_world.node_a)
    user.wait_joined()
    path = f"/api/collaboration/{live_world.collab_ab.pk}/organization"
    organization = {"id": live_world.org_a.pk}

    _rounds(live_world, sockets, hosts, [node, user], path, ("DELETE", organization), ("POST", organization))


def test_a_user_whose_role_loses_the_event_rule_hears_none_of_the_later_events(hosts, live_world, sockets):
    role = Role.objects.using(LIVE).create(
        name=f"listener-{uuid.uuid4().hex[:8]}", organization=live_world.org_a
    )
    rule = event_rule()
    role.rules.add(rule)
    member = make_user(live_world.org_a)
    member.roles.add(role)
    user = sockets(hosts[0], token(member), transports=["websocket"])
    user.wait_joined()

    _rounds(
        live_world,
        sockets,
        hosts,
        [user],
        f"/api/role/{role.pk}",
        ("PATCH", {"rules": []}),
        ("PATCH", {"rules": [rule.pk]}),
    )


@requires_services("rabbitmq")
def test_a_process_that_does_not_confirm_delays_the_answer_by_the_bound_only(instances, live_world, sockets):
    """A process that died without being buried yet never confirms: the change is answered after the
    bound (1 s) all the same, and the live processes moved their sockets."""
    first, second = instances
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    node = sockets(first.url, token(live_world.node_a), transports=["websocket"])
    node.wait_ready(live_world.node_a)
    witness = _witness(sockets, first.url, live_world, node)
    url = f"{second.url}/api/collaboration/{live_world.collab_ab.pk}/organization"
    dead = SocketProcess.objects.using(LIVE).create(id=uuid.uuid4().hex[:24], beat_at=timezone.now())
    try:
        started = time.monotonic()
        _call("DELETE", url, admin, id=live_world.org_a.pk)
        waited = time.monotonic() - started
    finally:
        dead.delete()

    assert 1 <= waited < 3
    assert _new_task_heard(live_world, second.url, witness, node) == []
