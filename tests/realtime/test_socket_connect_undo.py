"""Connects of one identity that are refused (its login ended as they read its rights) while others of it
are under way: whatever order their undos come in, the connection on record is one a socket holds, and
its disconnect marks the identity offline."""

from __future__ import annotations

import sys
import uuid

import pytest
import requests
import websocket
from django.utils import timezone

from accounts.models import Authenticatable, LoginSession
from accounts.tokens import decode
from nodes.consumers import connected, unconnected, went_offline
from nodes.models import SocketConnection
from tests.realtime.helpers import eventually, hears, make_user, token
from tests.realtime.live import LIVE, Daphne

HOOKED = [sys.executable, "-c", "import tests.realtime.hooked_server as hooks; hooks.main()"]


def _on_record(identity_id: int) -> tuple[str, str] | None:
    return (
        SocketConnection.objects.filter(identity_id=identity_id).values_list("generation", "process").first()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("undone_first", ["earlier", "later"])
def test_two_refused_connects_put_back_the_connection_of_the_older_socket(world, undone_first):
    node = world.node_a
    older, _ = connected(node.pk, "p0")
    Authenticatable.objects.filter(pk=node.pk).update(status="online")
    earlier = connected(node.pk, "p1")
    later = connected(node.pk, "p2")

    for generation, replaced in (earlier, later) if undone_first == "earlier" else (later, earlier):
        unconnected(node.pk, generation, replaced)

    assert _on_record(node.pk) == (older, "p0")
    assert went_offline({"id": node.pk, "kind": "node", "generation": older}) is True
    assert Authenticatable.objects.get(pk=node.pk).status == "offline"


@pytest.mark.django_db
@pytest.mark.parametrize("undone_first", ["earlier", "later"])
def test_two_refused_connects_of_an_identity_without_a_socket_leave_no_connection(world, undone_first):
    node = world.node_a
    earlier = connected(node.pk, "p1")
    later = connected(node.pk, "p2")

    for generation, replaced in (earlier, later) if undone_first == "earlier" else (later, earlier):
        unconnected(node.pk, generation, replaced)

    assert _on_record(node.pk) is None


@pytest.mark.django_db
def test_a_refused_connect_replaced_by_an_accepted_one_leaves_that_one_on_record(world):
    node = world.node_a
    connected(node.pk, "p0")
    refused = connected(node.pk, "p1")
    accepted, _ = connected(node.pk, "p2")

    unconnected(node.pk, *refused)

    assert _on_record(node.pk) == (accepted, "p2")


@pytest.fixture(scope="module")
def hooked_pair(live_db, live_folder):
    """The hooks' folder and two hooked server processes on the live database."""
    folder = live_folder / f"hooks-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    # The test reads a socket only when it waits for a frame: no ping may time out meanwhile.
    env = live_db.process_env(
        HOOKS_DIR=str(folder), V6_SOCKET_PING_INTERVAL="60", V6_SOCKET_PING_TIMEOUT="60"
    )
    first = Daphne(env, live_folder, HOOKED)
    try:
        second = Daphne(env, live_folder, HOOKED)
        yield folder, first, second
        second.stop()
    finally:
        first.stop()


def _open(host: Daphne, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to ``host`` that asked to connect to ``/tasks``."""
    url = f"ws://127.0.0.1:{host.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=30, header=[f"Authorization: Bearer {bearer}"])
    assert ws.recv().startswith("0{")  # the Engine.IO OPEN
    ws.send("40/tasks,{}")
    return ws


def _status(host: Daphne, node_id: int, admin: str) -> str:
    headers = {"Authorization": f"Bearer {admin}"}
    response = requests.get(f"{host.url}/api/node/{node_id}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["status"]


@pytest.mark.live
def test_a_node_goes_offline_when_its_socket_closes_after_two_refused_connects_of_it(hooked_pair, live_world):
    """Two connects on two processes record their connections one after the other, both logins end, and
    the earlier one is refused (and undone) first, then the later one."""
    folder, first, second = hooked_pair
    node = live_world.node_a
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    older = _open(first, token(node))
    assert hears(older, lambda frame: frame == '42/tasks,["sync"]', 10)
    sockets = [older]
    try:
        ended = []
        for host in (first, second):  # one after the other: the second replaces the first's connection
            hook, mark = folder / f"{host.port}.hold-connected", folder / f"{host.port}.connected"
            hook.touch()
            ended.append(token(node))
            sockets.append(_open(host, ended[-1]))
            assert eventually(mark.exists)
        logins = [decode(bearer)["sid"] for bearer in ended]
        LoginSession.objects.using(LIVE).filter(pk__in=logins).update(revoked_at=timezone.now())
        for host, ws in zip((first, second), sockets[1:], strict=True):
            (folder / f"{host.port}.hold-connected").unlink()
            assert hears(ws, lambda frame: frame == '42/tasks,["invalid_token"]', 10)
        assert _status(second, node.pk, admin) == "online"

        older.close()

        assert eventually(lambda: _status(second, node.pk, admin) == "offline", timeout=5)
    finally:
        for ws in sockets:
            ws.close()
