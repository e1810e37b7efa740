"""An identity is online while any of its sockets is connected, and offline once the last one closed:
whatever order its sockets close in, and also when a connect of it was refused meanwhile."""

from __future__ import annotations

import pytest
import requests
import websocket
from django.utils import timezone

from accounts.models import LoginSession
from accounts.tokens import decode
from nodes.models import NodeMetrics, SocketConnection
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, hears, joined, make_user, token, user_socket
from tests.realtime.live import HOOKED, LIVE, Daphne, hooked_servers

CONNECTED = '40/tasks,{"sid":'
REFUSED = '42/tasks,["invalid_token"]'


@pytest.fixture
def closing():
    """The websockets a test appends here are closed at its end."""
    opened: list[websocket.WebSocket] = []
    yield opened
    for ws in opened:
        ws.close()


def _open(host: Daphne, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to ``host``, its Engine.IO handshake done."""
    url = f"ws://127.0.0.1:{host.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=30, header=[f"Authorization: Bearer {bearer}"])
    assert ws.recv().startswith("0{")
    return ws


def _connect(host: Daphne, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to ``host``, connected to ``/tasks`` and in its rooms."""
    ws = _open(host, bearer)
    ws.send("40/tasks,{}")
    assert hears(ws, lambda frame: frame.startswith(CONNECTED), 10)
    return ws


def _status(host: Daphne, path: str, admin: str) -> str:
    headers = {"Authorization": f"Bearer {admin}"}
    response = requests.get(f"{host.url}/api/{path}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["status"]


def _becomes(host: Daphne, path: str, admin: str, status: str, timeout: float = 5) -> bool:
    return bool(eventually(lambda: _status(host, path, admin) == status, timeout=timeout))


def _offline_once_closed(host: Daphne, path: str, admin: str, last: websocket.WebSocket) -> None:
    """The identity at ``path`` is online while its ``last`` socket is open, and offline once it closed."""
    assert _status(host, path, admin) == "online"

    last.close()

    assert _becomes(host, path, admin, "offline")


@pytest.mark.live
def test_a_refused_connect_leaves_the_older_socket_of_the_identity_marking_it_offline(
    unpinged, live_world, closing
):
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    older = _connect(unpinged, token(user))
    closing.append(older)
    # A second login's socket, whose login ends between its handshake and its connect.
    ended = token(user)
    refused = _open(unpinged, ended)
    closing.append(refused)
    LoginSession.objects.using(LIVE).filter(pk=decode(ended)["sid"]).update(revoked_at=timezone.now())
    refused.send("40/tasks,{}")
    assert hears(refused, lambda frame: frame == REFUSED, 10)

    _offline_once_closed(unpinged, f"user/{user.pk}", admin, older)


@pytest.mark.live
@pytest.mark.parametrize("kind", ["user", "node"])
def test_closing_the_newer_of_two_sockets_on_one_process_leaves_the_identity_online(
    unpinged, live_world, kind, closing
):
    identity = (
        make_user(live_world.org_a, event_scope="COLLABORATION") if kind == "user" else live_world.node_a
    )
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    older = _connect(unpinged, token(identity))
    closing.append(older)
    newer = _connect(unpinged, token(identity))
    closing.append(newer)
    path = f"{kind}/{identity.pk}"
    assert _status(unpinged, path, admin) == "online"

    newer.send("41/tasks,")  # as a client leaving does, before it closes the connection
    newer.close()

    assert not _becomes(unpinged, path, admin, "offline")
    _offline_once_closed(unpinged, path, admin, older)


@pytest.mark.live
@requires_services("rabbitmq")
def test_closing_the_newer_of_two_sockets_on_two_processes_leaves_the_identity_online(
    instances, live_world, sockets
):
    """The process of the older socket finds the identity without a connection row at its next
    housekeeping round, takes the row and marks the identity online again."""
    a, b = instances
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    path = f"user/{user.pk}"
    older = sockets(a.url, token(user))
    older.wait_for("message", where=joined)
    rows = SocketConnection.objects.using(LIVE).filter(identity_id=user.pk)
    first = rows.get().process
    newer = sockets(b.url, token(user))
    newer.wait_for("message", where=joined)
    assert rows.get().process != first

    newer.close()

    # A housekeeping round comes every NODE_HEARTBEAT_TIMEOUT / 20 seconds (bounded generously).
    assert eventually(lambda: rows.filter(process=first).exists(), timeout=20)
    assert _becomes(b, path, admin, "online")
    older.close()
    assert _becomes(b, path, admin, "offline")


def _config(host: Daphne, node_id: int, admin: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {admin}"}
    response = requests.get(f"{host.url}/api/node/{node_id}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["config"]


@pytest.mark.live
@requires_services("rabbitmq")
def test_a_node_keeps_its_configuration_and_metrics_while_a_socket_of_it_is_left_on_another_process(
    instances, live_world, sockets
):
    a, b = instances
    node = live_world.node_a
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    watching = user_socket(sockets, a.url, live_world.org_a)
    older = sockets(a.url, token(node))
    older.wait_ready(node)
    older.emit("node_info_update", {"encryption": False, "allowed_orgs": [1, 2]})
    older.emit("node_metrics_update", {"cpu_percent": 12.5, "os": "Linux"})
    shared = [{"key": "encryption", "value": "false"}, {"key": "allowed_orgs", "value": "1"}]
    shared.append({"key": "allowed_orgs", "value": "2"})
    assert eventually(lambda: _config(b, node.pk, admin) == shared)
    metrics = NodeMetrics.objects.using(LIVE).filter(node_id=node.pk)
    assert eventually(lambda: list(metrics.values_list("os", "values")) == [("Linux", {"cpu_percent": 12.5})])
    rows = SocketConnection.objects.using(LIVE).filter(identity_id=node.pk)
    first = rows.get().process
    newer = sockets(b.url, token(node))
    newer.wait_ready(node)
    newer.emit("node_info_update", {"encryption": False, "allowed_orgs": [1, 2]})
    assert rows.get().process != first

    newer.close()

    # The process of the older socket restores the node's row at its next housekeeping round.
    assert watching.wait_for("node-offline")["id"] == node.pk
    assert watching.wait_for("node-online", timeout=20)["id"] == node.pk
    assert rows.filter(process=first).exists()
    assert _status(b, f"node/{node.pk}", admin) == "online"
    assert _config(b, node.pk, admin) == shared
    assert list(metrics.values_list("os", "values")) == [("Linux", {"cpu_percent": 12.5})]
    older.close()
    assert _becomes(b, f"node/{node.pk}", admin, "offline")
    assert _config(b, node.pk, admin) == []  # as in vantage6: a node offline shares nothing
    assert not metrics.exists()


@pytest.fixture(scope="module")
def hooked_pair(live_db, live_folder):
    """The hooks' folder and two hooked server processes on the live database."""
    # The test reads a socket only when it waits for a frame: no ping may time out meanwhile.
    ping = {"V6_SOCKET_PING_INTERVAL": "60", "V6_SOCKET_PING_TIMEOUT": "60"}
    with hooked_servers(live_db, live_folder, [HOOKED, HOOKED], **ping) as (folder, (first, second)):
        yield folder, first, second


@pytest.mark.live
def test_a_node_goes_offline_when_its_socket_closes_after_two_refused_connects_of_it(
    hooked_pair, live_world, closing
):
    """Two connects on two processes record their connections one after the other, both logins end, and
    the earlier one is refused (and undone) first, then the later one."""
    folder, first, second = hooked_pair
    node = live_world.node_a
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    older = _connect(first, token(node))
    closing.append(older)
    ended = []
    for host in (first, second):  # one after the other: the second replaces the first's connection
        hook, mark = folder / f"{host.port}.hold-connected", folder / f"{host.port}.connected"
        hook.touch()
        ended.append(token(node))
        closing.append(_open(host, ended[-1]))
        closing[-1].send("40/tasks,{}")
        assert eventually(mark.exists)
    logins = [decode(bearer)["sid"] for bearer in ended]
    LoginSession.objects.using(LIVE).filter(pk__in=logins).update(revoked_at=timezone.now())
    for host, ws in zip((first, second), closing[1:], strict=True):
        (folder / f"{host.port}.hold-connected").unlink()
        assert hears(ws, lambda frame: frame == REFUSED, 10)

    _offline_once_closed(second, f"node/{node.pk}", admin, older)
