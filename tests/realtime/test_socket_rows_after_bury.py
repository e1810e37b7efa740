"""An identity with sockets on two server processes keeps its connection row when the process holding
the newest one dies: a change of rights still finds the socket left on the other, which shows online."""

from __future__ import annotations

import signal

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Authenticatable
from nodes.models import NodeConfig, SocketConnection, SocketProcess
from nodes.socket_store import restore_rows
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.test_socket_revocation import assert_hears_no_new_task


@pytest.mark.django_db
def test_a_round_with_every_row_in_place_costs_one_query_and_changes_nothing(world):
    SocketConnection.objects.create(identity_id=world.node_a.pk, generation="newest", process="other")

    with CaptureQueriesContext(connection) as context:
        assert (
            restore_rows(
                "here", {world.node_a.pk: "older"}, {world.node_a.pk: {"config": [("key", "value")]}}
            )
            == []
        )

    assert len(context.captured_queries) == 1
    assert SocketConnection.objects.get(identity_id=world.node_a.pk).generation == "newest"


@pytest.mark.django_db
def test_an_identity_without_a_row_gets_one_held_here_and_is_online(world):
    SocketConnection.objects.create(identity_id=world.node_b.pk, generation="kept", process="other")
    Authenticatable.objects.filter(pk=world.node_a.pk).update(status="offline")

    NodeConfig.objects.create(node=world.node_b, key="encryption", value="true")
    reported = {
        pk: {"config": [("encryption", "false"), ("allowed_users", "3")]}
        for pk in (world.node_a.pk, world.node_b.pk)
    }

    assert restore_rows("here", {world.node_a.pk: "older", world.node_b.pk: "mine"}, reported) == [
        world.node_a.pk
    ]

    rows = SocketConnection.objects.values_list("identity_id", "generation", "process")
    assert set(rows) == {(world.node_a.pk, "older", "here"), (world.node_b.pk, "kept", "other")}
    assert Authenticatable.objects.get(pk=world.node_a.pk).status == "online"
    config = NodeConfig.objects.values_list("node_id", "key", "value")
    assert set(config) == {
        (world.node_a.pk, "encryption", "false"),
        (world.node_a.pk, "allowed_users", "3"),
        (world.node_b.pk, "encryption", "true"),  # its row is another socket's, whose node reports its own
    }


@pytest.mark.live
@requires_services("rabbitmq")
def test_rights_taken_after_a_process_died_reach_the_older_socket_on_a_live_one(
    live_db, live_folder, instances, live_world, sockets
):
    a, b = instances
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    older = sockets(a.url, token(user))
    older.wait_joined()
    witness = sockets(b.url, token(live_world.node_b))
    witness.wait_ready(live_world.node_b)
    doomed = Daphne(live_db.process_env(V6_RABBITMQ_URI=a.env["V6_RABBITMQ_URI"]), live_folder)
    try:
        newer = sockets(doomed.url, token(user))  # a second tab: the row names it now
        newer.wait_joined()
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
