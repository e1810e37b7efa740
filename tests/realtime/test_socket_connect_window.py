"""A socket that connects while a change of rights commits keeps no room the change took away: its
connect read the rights before the change, and the change's lookup of the connected sockets (after its
commit) ran before the connect finished. The connecting process holds right after it read the socket's
identity and rooms (``hooked_server``'s ``hold-identified``) while the change is made on another process.

The connection row a connect writes before that read is undone when the read refuses the socket.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from django.utils import timezone

from accounts.models import Authenticatable, LoginSession
from accounts.sessions import end_all_logins
from accounts.tokens import decode
from nodes.consumers import identify
from nodes.events import collaboration_room
from nodes.models import SocketConnection
from tests.conftest import requires_services
from tests.realtime.helpers import LiveWorld, create_task, eventually, hears, make_user, token
from tests.realtime.live import HOOKED, LONG_PINGS, Daphne, hooked_servers, open_tasks_socket
from tests.realtime.test_socket_rights import _call


@pytest.fixture(scope="module")
def hooked(live_db, live_folder):
    """The hooks' folder, a hooked server process and a plain one, sharing the database and RabbitMQ."""
    env = {
        "V6_RABBITMQ_URI": os.environ["V6_RABBITMQ_URI"],
        **LONG_PINGS,
    }
    with hooked_servers(live_db, live_folder, [HOOKED, None], **env) as (folder, servers):
        yield folder, *servers


def _remove_rules(host: Daphne, admin: str, user, world: LiveWorld) -> None:  # noqa: ARG001
    _call("PATCH", f"{host.url}/api/user/{user.pk}", admin, rules=[])


def _remove_organization(host: Daphne, admin: str, user, world: LiveWorld) -> None:  # noqa: ARG001
    _call(
        "DELETE", f"{host.url}/api/collaboration/{world.collab_ab.pk}/organization", admin, id=world.org_a.pk
    )


@pytest.mark.live
@requires_services("rabbitmq")
@pytest.mark.usefixtures("broker_only")
@pytest.mark.parametrize("change", [_remove_rules, _remove_organization])
def test_a_socket_whose_rights_change_while_it_connects_leaves_the_rooms_it_lost(hooked, live_world, change):
    folder, connecting, changing = hooked
    room = collaboration_room(live_world.collab_ab.pk)
    joined = f' joined room {room}"]'
    witness = open_tasks_socket(
        connecting.port, token(make_user(live_world.org_b, event_scope="COLLABORATION"))
    )
    sockets = [witness]
    user = make_user(live_world.org_a, event_scope="COLLABORATION")  # never connected before
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    armed = folder / f"{connecting.port}.hold-identified"
    try:
        assert hears(witness, lambda frame: frame.endswith(joined), 10)
        armed.touch()
        ws = open_tasks_socket(connecting.port, token(user))
        sockets.append(ws)
        # The connect read the user's rights (room of collaboration AB) and holds; the change commits
        # and looks up the connected sockets meanwhile.
        assert eventually(lambda: (folder / f"{connecting.port}.identified").exists())
        change(changing, admin, user, live_world)
        armed.unlink()

        assert hears(ws, lambda frame: frame.startswith('40/tasks,{"sid":'), 10)
        assert hears(ws, lambda frame: frame.endswith(f'"{user.username} left room {room}"]'), 10)
        researcher = make_user(live_world.org_b, roles=("Researcher",))
        task_id = create_task(changing.url, researcher, live_world.collab_ab, [live_world.org_b])
        new_task = f'"new_task",{{"id":{task_id},'
        assert hears(witness, lambda frame: new_task in frame, 10)
        assert not hears(ws, lambda frame: new_task in frame, 2)
    finally:
        armed.unlink(missing_ok=True)
        for socket in sockets:
            socket.close()


@pytest.mark.live
@requires_services("rabbitmq")
def test_a_change_is_answered_once_a_socket_connecting_meanwhile_was_checked_again(hooked, live_world):
    """The connecting process confirms the change's recheck once the connect it held is done and checked
    again, within the bound: an answer before that would let an event published after it reach the
    socket in the room it joins with the rights of before."""
    folder, connecting, changing = hooked
    room = collaboration_room(live_world.collab_ab.pk)
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    admin = token(make_user(live_world.org_c, roles=("Root",)))
    # Connected once the connecting process beat: the change waits for it.
    witness = open_tasks_socket(
        connecting.port, token(make_user(live_world.org_b, event_scope="COLLABORATION"))
    )
    sockets = [witness]
    armed = folder / f"{connecting.port}.hold-identified"
    answered: list[float] = []
    try:
        assert hears(witness, lambda frame: frame.endswith(f' joined room {room}"]'), 10)
        armed.touch()
        sockets.append(ws := open_tasks_socket(connecting.port, token(user)))
        assert eventually(lambda: (folder / f"{connecting.port}.identified").exists())
        change = threading.Thread(
            target=lambda: (
                _remove_rules(changing, admin, user, live_world),
                answered.append(time.monotonic()),
            )
        )
        change.start()
        time.sleep(0.3)  # within the bound the change waits for a confirmation (1 s)
        released = time.monotonic()
        armed.unlink()
        change.join(10)

        assert answered and answered[0] > released
        assert hears(ws, lambda frame: frame.endswith(f'"{user.username} left room {room}"]'), 10)
    finally:
        armed.unlink(missing_ok=True)
        for socket in sockets:
            socket.close()


def _connect_with(claims: dict) -> object:
    return identify({"claims": claims}, "a-process")


@pytest.mark.django_db
def test_a_connect_refused_for_an_ended_login_leaves_no_connection_and_the_node_offline(world):
    node = world.node_a
    claims = decode(token(node))
    end_all_logins(node.pk)

    assert _connect_with(claims) == "invalid_token"

    assert not SocketConnection.objects.filter(identity_id=node.pk).exists()
    assert Authenticatable.objects.get(pk=node.pk).status == "offline"


@pytest.mark.django_db
def test_a_connect_refused_leaves_the_connection_of_an_older_socket_on_record(world):
    """Another login of the node may still be connected: its disconnect marks the node offline, and a
    dead process's connections are found, by that row."""
    node = world.node_a
    kept, ended = decode(token(node)), decode(token(node))
    older = _connect_with(kept)
    assert isinstance(older, dict)
    LoginSession.objects.filter(pk=ended["sid"]).update(revoked_at=timezone.now())

    assert identify({"claims": ended}, "another-process") == "invalid_token"

    row = SocketConnection.objects.get(identity_id=node.pk)
    assert (row.generation, row.process) == (older["generation"], "a-process")
    assert Authenticatable.objects.get(pk=node.pk).status == "online"
