"""An identity with sockets on two server processes keeps its connection row when the process holding
the newest one dies: a change of rights still finds the socket left on the other, which shows online."""

from __future__ import annotations

import signal

import pytest
import requests

from accounts.models import Authenticatable
from nodes.models import SocketConnection, SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.test_socket_revocation import assert_hears_no_new_task, joined

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]


def test_rights_taken_after_a_process_died_reach_the_older_socket_on_a_live_one(
    live_db, live_folder, instances, live_world, sockets
):
    a, b = instances
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    older = sockets(a.url, token(user))
    older.wait_for("message", where=joined)
    witness = sockets(b.url, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    doomed = Daphne(live_db.process_env(V6_RABBITMQ_URI=a.env["V6_RABBITMQ_URI"]), live_folder)
    try:
        newer = sockets(doomed.url, token(user))  # a second tab: the row names it now
        newer.wait_for("message", where=joined)
        newer.client.reconnection = False
        dead = SocketConnection.objects.using(LIVE).get(identity_id=user.pk).process

        doomed.process.send_signal(signal.SIGKILL)  # no disconnect handling at all
        doomed.process.wait()
        # Buried by a survivor's sweep (bounded generously: a loaded machine delays it).
        assert eventually(lambda: not SocketProcess.objects.using(LIVE).filter(id=dead).exists(), timeout=20)
    finally:
        doomed.stop()

    admin = token(make_user(live_world.org_a, roles=("Root",)))
    response = requests.patch(
        f"{b.url}/api/user/{user.pk}",
        json={"rules": []},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert response.ok, response.text

    room = f"collaboration_{live_world.collab_ab.pk}"
    older.wait_for("message", where=lambda text: isinstance(text, str) and f"left room {room}" in text)
    assert_hears_no_new_task(older, b.url, live_world, witness)
    status = Authenticatable.objects.using(LIVE).filter(pk=user.pk)
    assert eventually(lambda: status.get().status == "online", timeout=5)
    assert SocketConnection.objects.using(LIVE).get(identity_id=user.pk).process != dead
