"""One identity (a node's stolen API key, say) that opens many sockets holds at most a few of them in a
server process, the newest winning, and gets no more events relayed, nor written, than one socket of it may
send: the packet bound holds per identity, across its sockets. Another node's events pass meanwhile."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import socketio
from django.conf import settings
from django.db.models import Max

from accounts.models import Rule, User
from collaborations.models import Organization
from nodes.models import Node
from tests.realtime.conftest import _daphne
from tests.realtime.helpers import TASKS, eventually, make_run, make_user, ready_nodes, token
from tests.realtime.live import LIVE

NODE_SESSIONS = settings.SOCKET_SESSIONS_PER_NODE  # the servers' too: they read the same environment

pytestmark = pytest.mark.live

BURST, RATE = 10, 5
USER_SESSIONS = 3


@pytest.fixture(scope="module")
def bounded_server(live_db, live_folder):
    bounds = {
        "V6_SOCKET_PACKET_BURST": BURST,
        "V6_SOCKET_PACKET_RATE": RATE,
        "V6_SOCKET_SESSIONS_PER_USER": USER_SESSIONS,
    }
    for daphne in _daphne(live_db, live_folder, **{name: str(value) for name, value in bounds.items()}):
        yield daphne
        daphne.show_log()


def _relayed(socket, seconds: float) -> list[dict]:
    return [data for name, data in socket.received(seconds) if name == "algorithm_status_change"]


def test_many_sockets_of_one_node_share_its_packet_bound(bounded_server, live_world, sockets):
    watcher, *flooders = ready_nodes(
        sockets, bounded_server.url, live_world.node_b, *[live_world.node_a] * NODE_SESSIONS
    )
    run = make_run(live_world)
    report = {"run_id": run.pk, "task_id": run.task_id, "collaboration_id": run.task.collaboration_id}

    started = time.monotonic()
    for _ in range(BURST):  # each socket stays within its own bound
        for socket in flooders:
            socket.emit("algorithm_status_change", {**report, "status": "active"})
    flooding = time.monotonic() - started

    relayed = len(_relayed(watcher, 2))
    # One socket's bound (its burst, plus what the rate refilled while it flooded), not one per socket.
    assert 1 <= relayed <= BURST + RATE * (flooding + 0.5)
    assert f"node:{live_world.node_a.pk} sends more than" in bounded_server.log.read_text()

    # Another node is not held by the bound of the flooding one.
    node_b = sockets(bounded_server.url, token(live_world.node_b))
    node_b.wait_ready(live_world.node_b)
    run_b = make_run(live_world, live_world.org_b)
    report_b = {"run_id": run_b.pk, "task_id": run_b.task_id, "collaboration_id": run_b.task.collaboration_id}
    for status in ("active", "completed"):
        node_b.emit("algorithm_status_change", {**report_b, "status": status})
    heard = [data["status"] for data in _relayed(flooders[0], 2) if data["run_id"] == run_b.pk]
    assert heard == ["active", "completed"]


def _connected_client(url: str, bearer: str) -> socketio.Client:
    client = socketio.Client(reconnection=False)  # one that came back would end another
    client.connect(url, headers={"Authorization": f"Bearer {bearer}"}, namespaces=[TASKS])
    return client


def test_a_node_holds_few_sockets_the_newest_winning(bounded_server, live_world):
    opened = []
    try:
        for _ in range(NODE_SESSIONS + 4):
            opened.append(_connected_client(bounded_server.url, token(live_world.node_c)))
            time.sleep(0.2)  # connected in this order
        assert eventually(
            lambda: [client.connected for client in opened] == [False] * 4 + [True] * NODE_SESSIONS
        )
        # The newest sockets hold the node's connection: it stays online, and they are served.
        assert Node.objects.using(LIVE).get(pk=live_world.node_c.pk).status == "online"
        opened[-1].call("ping", namespace=TASKS, timeout=5)  # answered
    finally:
        for client in opened:
            client.disconnect()


def test_sockets_connecting_at_once_are_bounded_too(bounded_server, live_world):
    bearer = token(live_world.node_c)
    with ThreadPoolExecutor(8) as pool:
        opened = list(pool.map(lambda _: _connected_client(bounded_server.url, bearer), range(8)))
    try:
        assert eventually(lambda: sum(client.connected for client in opened) == NODE_SESSIONS)
        time.sleep(1)  # and stay so
        assert sum(client.connected for client in opened) == NODE_SESSIONS
    finally:
        for client in opened:
            client.disconnect()


def test_a_user_holds_the_configured_number_of_sockets(bounded_server, live_world):
    bearer = token(make_user(live_world.org_a, event_scope="COLLABORATION"))
    opened = []
    try:
        for _ in range(USER_SESSIONS + 2):
            opened.append(_connected_client(bounded_server.url, bearer))
            time.sleep(0.2)  # connected in this order
        expected = [False] * 2 + [True] * USER_SESSIONS
        assert eventually(lambda: [client.connected for client in opened] == expected)
    finally:
        for client in opened:
            client.disconnect()


def test_a_user_with_a_node_s_id_ends_none_of_its_sockets(bounded_server, live_world):
    """Users and nodes are numbered apart, so a user may have a node's id: the user's sockets (a tab each)
    count towards the user's bound alone and end none of the node's."""
    pk = 1000 + max(model.objects.using(LIVE).aggregate(top=Max("pk"))["top"] or 0 for model in (User, Node))
    organization = Organization.objects.using(LIVE).create(name=f"org-{pk}")
    live_world.collab_c.organizations.add(organization)
    node = Node(pk=pk, name=f"node-{pk}", organization=organization, collaboration=live_world.collab_c)
    node.set_api_key(str(uuid.uuid4()))
    node.save(using=LIVE)
    user = User(pk=pk, username=f"user-{pk}", email=f"{pk}@example.org", organization=live_world.org_a)
    user.save(using=LIVE)
    user.rules.add(*Rule.objects.using(LIVE).filter(name="event", scope="COLLABORATION", operation="RECEIVE"))
    opened = [_connected_client(bounded_server.url, token(node))]
    try:
        for _ in range(USER_SESSIONS):
            opened.append(_connected_client(bounded_server.url, token(user)))
            time.sleep(0.2)  # connected in this order
        time.sleep(1)  # an ended socket would be disconnected by now
        assert [client.connected for client in opened] == [True] * (1 + USER_SESSIONS)
    finally:
        for client in opened:
            client.disconnect()
