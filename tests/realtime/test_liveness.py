"""Process liveness: a heartbeat round costs the same whatever the number of sockets (one query checks
the identities of all of them), and a process found silent loses its connections only if it is still
silent when acted on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test.utils import CaptureQueriesContext

from accounts.models import Authenticatable
from accounts.tokens import decode
from nodes.consumers import KEPT_CLAIMS, mark_silent_nodes_offline, server
from nodes.models import NodeConfig, SocketConnection, SocketProcess
from nodes.socket_store import DatabaseLiveness
from tests.realtime.helpers import token
from vantage6.socketio.store import WEBSOCKET, Session


class _HeldSocket:
    """A websocket of this process, as the heartbeat round sees it."""

    async def send_packets(self, packets: list[str]) -> None:
        raise AssertionError(f"a socket with a good token was sent {packets}")

    async def close(self) -> None:
        raise AssertionError("a live process drops none of its sockets")


def _statements_of_a_round(held: int, claims: dict) -> list[str]:
    async def heartbeat_round() -> None:
        await server.beat()
        await server.sweep()

    async_to_sync(server.beat)()  # the process's row, in this test's database
    sessions = {}
    for number in range(held):
        session = Session(f"held-{number}", WEBSOCKET, {"claims": claims})
        session.owner, session.sink = f"node:{claims['sub']}", _HeldSocket()
        sessions[session.sid] = session
    server.sessions = sessions
    try:
        # From synchronous code the database work runs in this thread, on the test's connection.
        with CaptureQueriesContext(connections["default"]) as context:
            async_to_sync(heartbeat_round)()
    finally:
        server.sessions = {}
    return [query["sql"] for query in context.captured_queries]


@pytest.mark.django_db(transaction=True)  # database_sync_to_async closes a connection inside a transaction
def test_a_heartbeat_round_costs_the_same_for_one_or_a_thousand_sockets(world):
    claims = {key: value for key, value in decode(token(world.node_a)).items() if key in KEPT_CLAIMS}
    _statements_of_a_round(
        1, claims
    )  # as the socket's handshake did: its login is looked up once per process

    few, many = _statements_of_a_round(1, claims), _statements_of_a_round(1000, claims)

    assert len(few) == len(many) <= 4  # beat, identities of all sockets, silent processes
    assert [sql for sql in many if "authenticatable" in sql.lower()] != []


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds)


def _held_by(process: str, node) -> None:
    Authenticatable.objects.filter(pk=node.pk).update(status="online")
    SocketConnection.objects.create(identity_id=node.pk, generation="g", process=process)
    NodeConfig.objects.create(node=node, key="encryption", value="false")


@pytest.mark.django_db
def test_a_stalled_process_that_beats_again_keeps_its_connections(world):
    liveness = DatabaseLiveness(process_lost=_unexpected)
    SocketProcess.objects.create(id="stalled", beat_at=_ago(600))
    _held_by("stalled", world.node_a)

    assert liveness.silent(60) == ["stalled"]
    liveness.beat("stalled")  # it wakes up before the survivor acts

    assert liveness.bury("stalled", 60) is False
    assert SocketProcess.objects.filter(id="stalled").exists()
    assert SocketConnection.objects.filter(process="stalled").exists()
    assert Authenticatable.objects.get(pk=world.node_a.pk).status == "online"


def _unexpected(nodes: list[dict]) -> None:
    raise AssertionError(f"no node was lost: {nodes}")


@pytest.mark.django_db(transaction=True)  # the nodes lost are told after the commit
def test_a_dead_process_is_buried_once_with_what_it_held(world):
    lost: list[dict] = []
    liveness = DatabaseLiveness(process_lost=lost.extend)
    SocketProcess.objects.create(id="dead", beat_at=_ago(600))
    SocketProcess.objects.create(id="alive", beat_at=_ago(0))
    _held_by("dead", world.node_a)
    _held_by("alive", world.node_b)

    assert liveness.bury("dead", 60) is True
    assert liveness.bury("dead", 60) is False  # another survivor was first

    statuses = dict(
        Authenticatable.objects.filter(pk__in=[world.node_a.pk, world.node_b.pk]).values_list("pk", "status")
    )
    assert statuses == {world.node_a.pk: "offline", world.node_b.pk: "online"}
    assert list(NodeConfig.objects.values_list("node_id", flat=True)) == [world.node_b.pk]
    assert list(SocketConnection.objects.values_list("process", flat=True)) == ["alive"]
    assert list(SocketProcess.objects.values_list("id", flat=True)) == ["alive"]
    node = world.node_a
    assert lost == [
        {
            "id": node.pk,
            "name": node.name,
            "organization_id": node.organization_id,
            "collaboration_id": node.collaboration_id,
            "member": True,
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_a_node_the_heartbeat_sweep_marked_offline_is_not_reported_again_by_the_burial(world):
    lost: list[dict] = []
    liveness = DatabaseLiveness(process_lost=lost.extend)
    SocketProcess.objects.create(id="dead", beat_at=_ago(600))
    _held_by("dead", world.node_a)
    Authenticatable.objects.filter(pk=world.node_a.pk).update(last_seen=_ago(600))

    swept = mark_silent_nodes_offline()

    assert [node["id"] for node in swept] == [world.node_a.pk]
    assert mark_silent_nodes_offline() == []  # another process's sweep
    assert liveness.bury("dead", 60) is True
    assert lost == []
    assert not SocketConnection.objects.exists()
