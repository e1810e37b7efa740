"""A REST request's events leave its process after its answer, still in the order they were published: the
sockets of a room, on either process of one server, hear the events of the requests that one client made
one after the other in their order, also while other clients' requests run at the same time. A
process with no socket of its own passes them to its siblings too, also while the broker is away."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.realtime.helpers import ABSENT_BROKER, apart, create_task, make_user, token
from tests.realtime.live import Daphne

pytestmark = pytest.mark.live

SEQUENTIAL = 8
CONCURRENT = 16


@pytest.fixture
def brokerless(live_db, live_folder):
    """A fresh server of two processes whose broker is absent: no socket has come to either yet."""
    server = Daphne(live_db.process_env(V6_RABBITMQ_URI=ABSENT_BROKER), live_folder, workers=2)
    yield server
    server.stop()
    server.show_log()


def test_a_process_without_sockets_passes_its_rest_events_to_its_sibling(brokerless, live_world, sockets):
    # One socket, on one of the processes: the REST requests that land on the other (each its own
    # connection, spread over both by the kernel) reach it only over the processes' link. Before, a
    # process listened only from its first socket on, and gave them to the broker instead: lost.
    listener = sockets(brokerless.url, token(live_world.node_b), transports=["websocket"])
    listener.wait_ready(live_world.node_b)
    user = make_user(live_world.org_a, roles=("Researcher",))
    created = [create_task(brokerless.url, user, live_world.collab_ab) for _ in range(SEQUENTIAL)]
    assert _new_tasks(listener, SEQUENTIAL) == created


def _new_tasks(socket, count: int) -> list[int]:
    return [socket.wait_for("new_task")["id"] for _ in range(count)]


def test_the_sockets_of_a_room_hear_a_processes_rest_events_in_one_order(family, live_world, sockets):
    first, second = apart(sockets, family.url, token(live_world.node_a), token(live_world.node_b))
    first.wait_ready(live_world.node_a)
    second.wait_ready(live_world.node_b)
    users = [make_user(live_world.org_a, roles=("Researcher",)) for _ in range(4)]

    # One client's requests, one after the other, alternately on the two processes' connections.
    created = [create_task(family.url, users[0], live_world.collab_ab) for _ in range(SEQUENTIAL)]
    for socket in (first, second):
        assert _new_tasks(socket, SEQUENTIAL) == created

    # Several clients at once: every socket hears every task once, and each client's tasks in the order it
    # created them. (Two processes' concurrent requests have no one order: each process's sockets hear its
    # own requests' events first.)
    with ThreadPoolExecutor(len(users)) as pool:
        made = list(
            pool.map(
                lambda user: [
                    create_task(family.url, user, live_world.collab_ab)
                    for _ in range(CONCURRENT // len(users))
                ],
                users,
            )
        )
    for heard in [_new_tasks(socket, CONCURRENT) for socket in (first, second)]:
        assert sorted(heard) == sorted(task for tasks in made for task in tasks)
        for tasks in made:
            assert [task for task in heard if task in tasks] == tasks
    for socket in (first, second):
        assert [name for name, _ in socket.received(0.5) if name == "new_task"] == []
