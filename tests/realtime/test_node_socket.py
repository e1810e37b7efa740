"""Sockets of the official node's client and of users against a live server (one instance)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import requests

from accounts.models import Authenticatable
from nodes.models import NodeConfig, SocketProcess
from tasks.models import Run, Task
from tests.realtime.helpers import (
    create_task,
    eventually,
    expired_token,
    foreign_token,
    make_user,
    ready_nodes,
    token,
    token_pair,
    user_socket,
)
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live


def status_of(identity) -> str:
    return Authenticatable.objects.using(LIVE).get(pk=identity.pk).status


def joined_rooms(socket, seconds: float = 1.5) -> set[str]:
    """The rooms a socket was told it joined (all but ``all_nodes``) within ``seconds``."""
    notices = [data for name, data in socket.received(seconds) if name == "message"]
    return {notice.split(" joined room ")[1] for notice in notices if " joined room " in notice}


def no_new_task_reaches(socket, server, world) -> bool:
    create_task(server.url, make_user(world.org_a, roles=("Researcher",)), world.collab_ab)
    return "new_task" not in [name for name, _ in socket.received(1.5)]


def make_run(world, org) -> Run:
    task = Task(collaboration=world.collab_ab, image="i", job_id=random.randrange(10**6, 10**9), init_org=org)
    task.save(using=LIVE)
    run = Run(task=task, organization=org)
    run.save(using=LIVE)
    return run


@pytest.mark.parametrize(
    "transports", [None, ["websocket"], ["polling"]], ids=["default", "websocket", "polling"]
)
def test_node_gets_sync_then_new_task_created_over_rest(server, live_world, sockets, transports):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    node = sockets(server.url, token(live_world.node_a), transports=transports)
    node.wait_ready(live_world.node_a)
    # The official node starts with polling and upgrades to websocket.
    assert node.transport == (transports or ["websocket"])[0]

    task_id = create_task(server.url, researcher, live_world.collab_ab)

    assert node.wait_for("new_task") == {"id": task_id, "parent_id": None}
    assert status_of(live_world.node_a) == "online"


@pytest.mark.parametrize(
    "make_token, event", [(expired_token, "expired_token"), (foreign_token, "invalid_token")]
)
def test_unusable_token_is_told_and_joins_nothing(server, live_world, sockets, make_token, event):
    node = sockets(server.url, make_token(live_world.node_a))

    node.wait_for(event)
    assert node.client.connected  # the connection is kept
    assert [name for name, _ in node.received(1)] == []
    assert status_of(live_world.node_a) == "offline"
    assert no_new_task_reaches(node, server, live_world)


def test_a_token_revoked_by_a_new_api_key_is_told_and_joins_nothing(server, live_world, sockets):
    stolen = token(live_world.node_a)
    admin = make_user(live_world.org_a, roles=("Organization Admin",))
    reset = requests.post(
        f"{server.url}/api/recover/node",
        json={"id": live_world.node_a.pk},
        headers={"Authorization": f"Bearer {token(admin)}"},
        timeout=10,
    )
    assert reset.status_code == 200

    node = sockets(server.url, stolen)

    # The node would log in again with its API key, which the holder of a stolen token lacks.
    node.wait_for("invalid_token")
    assert [name for name, _ in node.received(1)] == []
    assert status_of(live_world.node_a) == "offline"
    assert no_new_task_reaches(node, server, live_world)


def test_refresh_token_stays_unidentified(server, live_world, sockets):
    refresh = token_pair(live_world.node_a)[1]
    node = sockets(server.url, refresh)

    assert node.received(1.5) == []  # no sync, no token event
    assert status_of(live_world.node_a) == "offline"


@pytest.mark.parametrize("scope", ["GLOBAL", "COLLABORATION", "ORGANIZATION", None])
def test_user_joins_the_rooms_of_its_event_rule(server, live_world, sockets, scope):
    user = make_user(live_world.org_a, event_scope=scope)
    socket = sockets(server.url, token(user))

    rooms = joined_rooms(socket)

    ab, c, org_a = live_world.collab_ab.pk, live_world.collab_c.pk, live_world.org_a.pk
    if scope == "GLOBAL":
        assert {f"collaboration_{ab}", f"collaboration_{c}"} <= rooms
        assert all(room.count("_") == 1 for room in rooms)
    else:
        expected = {
            "COLLABORATION": {f"collaboration_{ab}"},
            "ORGANIZATION": {f"collaboration_{ab}_organization_{org_a}"},
            None: set(),
        }[scope]
        assert rooms == expected


def test_user_sees_no_event_of_another_collaboration(server, live_world, sockets):
    socket = user_socket(sockets, server.url, live_world.org_a)
    researcher_a = make_user(live_world.org_a, roles=("Researcher",))
    researcher_c = make_user(live_world.org_c, roles=("Researcher",))

    other = create_task(server.url, researcher_c, live_world.collab_c)
    own = create_task(server.url, researcher_a, live_world.collab_ab)

    assert socket.wait_for("new_task") == {"id": own, "parent_id": None}
    assert other != own


def test_node_online_offline_with_status_and_shared_config(server, live_world, sockets):
    watching = user_socket(sockets, server.url, live_world.org_a)
    node_a = live_world.node_a
    notice = {"id": node_a.pk, "name": node_a.name, "org_id": node_a.organization_id}

    node = sockets(server.url, token(node_a))
    node.wait_ready(node_a)

    assert watching.wait_for("node-online") == notice
    assert (
        watching.wait_for("message") == f"{node_a.name} joined room collaboration_{live_world.collab_ab.pk}"
    )
    assert status_of(node_a) == "online"

    node.emit(
        "node_info_update",
        {
            "encryption": False,
            "allowed_algorithms": ["x/a", "x/b"],
            "database_labels": ["default"],
            "database_types": {"db_type_default": "csv"},
            "database_columns": {"columns_default": ["age", "weight"]},
        },
    )
    rows = NodeConfig.objects.using(LIVE).filter(node_id=node_a.pk)
    assert eventually(lambda: rows.count() == 7)
    assert sorted(rows.values_list("key", "value")) == [
        ("allowed_algorithms", "x/a"),
        ("allowed_algorithms", "x/b"),
        ("columns_default", "age"),
        ("columns_default", "weight"),
        ("database_labels", "default"),
        ("db_type_default", "csv"),
        ("encryption", "false"),
    ]

    node.close()

    assert watching.wait_for("node-offline") == notice
    assert status_of(node_a) == "offline"
    assert not rows.exists()


def test_node_info_update_replaces_the_previous_config(server, live_world, sockets):
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    rows = NodeConfig.objects.using(LIVE).filter(node_id=live_world.node_a.pk)

    node.emit("node_info_update", {"allowed_orgs": ["1", "2"]})
    assert eventually(lambda: rows.count() == 2)
    node.emit("node_info_update", {"allowed_users": [3]})

    assert eventually(lambda: list(rows.values_list("key", "value")) == [("allowed_users", "3")])


def test_algorithm_log_is_appended_and_relayed(server, live_world, sockets):
    watching = user_socket(sockets, server.url, live_world.org_b)
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    run = make_run(live_world, live_world.org_a)
    report = {"collaboration_id": live_world.collab_ab.pk, "run_id": run.pk, "task_id": run.task_id}

    node.emit("algorithm_log", {**report, "log": "first"})
    node.emit("algorithm_log", {**report, "log": "second\n"})
    node.emit("algorithm_log", {**report, "log": "third"})

    relayed = [watching.wait_for("algorithm_log") for _ in range(3)]
    assert relayed[0] == {"run_id": run.pk, "task_id": run.task_id, "log": "first"}
    assert Run.objects.using(LIVE).get(pk=run.pk).log == "first\nsecond\nthird"


def test_algorithm_status_change_is_relayed_with_job_id(server, live_world, sockets):
    node, other = ready_nodes(sockets, server.url, live_world.node_a, live_world.node_b)
    run = make_run(live_world, live_world.org_a)

    node.emit(
        "algorithm_status_change",
        {
            "run_id": run.pk,
            "task_id": run.task_id,
            "collaboration_id": live_world.collab_ab.pk,
            "status": "active",
            "node_id": live_world.node_a.pk,
            "organization_id": live_world.org_a.pk,
            "parent_id": None,
        },
    )

    expected = {
        "status": "active",
        "run_id": run.pk,
        "task_id": run.task_id,
        "job_id": run.task.job_id,
        "collaboration_id": live_world.collab_ab.pk,
        "node_id": live_world.node_a.pk,
        "organization_id": live_world.org_a.pk,
        "parent_id": None,
    }
    assert other.wait_for("algorithm_status_change") == expected
    assert node.wait_for("algorithm_status_change") == expected  # the sender is in the room too


def test_node_events_about_runs_of_others_or_from_users_are_ignored(server, live_world, sockets):
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    as_user = user_socket(sockets, server.url, live_world.org_a)
    run_of_b = make_run(live_world, live_world.org_b)
    run_of_a = make_run(live_world, live_world.org_a)

    node.emit("algorithm_log", {"run_id": run_of_b.pk, "log": "not mine"})
    as_user.emit("algorithm_log", {"run_id": run_of_a.pk, "log": "not a node"})
    as_user.emit("node_info_update", {"allowed_users": [1]})
    node.emit("algorithm_log", {"run_id": run_of_a.pk, "log": "mine"})

    assert node.wait_for("algorithm_log") == {
        "run_id": run_of_a.pk,
        "task_id": run_of_a.task_id,
        "log": "mine",
    }
    assert Run.objects.using(LIVE).get(pk=run_of_b.pk).log is None
    assert Run.objects.using(LIVE).get(pk=run_of_a.pk).log == "mine"
    assert not NodeConfig.objects.using(LIVE).filter(key="allowed_users", value="1").exists()


def test_events_are_acknowledged(server, live_world, sockets):
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)

    assert node.client.call("ping", namespace="/tasks", timeout=5) is None


def last_seen_of(identity):
    return Authenticatable.objects.using(LIVE).get(pk=identity.pk).last_seen


def test_connect_sets_online_but_only_ping_sets_last_seen(server, live_world, sockets):
    node_a = live_world.node_a
    assert last_seen_of(node_a) is None  # never seen: the sweep leaves such a node alone
    node = sockets(server.url, token(node_a))
    node.wait_ready(node_a)
    assert status_of(node_a) == "online"
    assert last_seen_of(node_a) is None

    node.emit("ping")

    assert eventually(lambda: last_seen_of(node_a) is not None, timeout=3)


def test_silent_node_goes_offline_and_ping_brings_it_back(server, live_world, sockets):
    # The node's REST calls before it connects are its last sign of life.
    headers = {"Authorization": f"Bearer {token(live_world.node_a)}"}
    assert requests.get(f"{server.url}/api/node/{live_world.node_a.pk}", headers=headers, timeout=10).ok
    node = sockets(server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)
    assert status_of(live_world.node_a) == "online"

    # V6_NODE_HEARTBEAT_TIMEOUT is 3 s for the live servers; this node sends no heartbeat.
    assert eventually(lambda: status_of(live_world.node_a) == "offline", timeout=6)
    silent_since = last_seen_of(live_world.node_a)
    node.emit("ping")

    assert eventually(lambda: status_of(live_world.node_a) == "online", timeout=3)
    assert last_seen_of(live_world.node_a) > silent_since


def test_node_reconnects_after_the_server_restarts(own_server, live_world, sockets):
    node = sockets(own_server.url, token(live_world.node_a))
    node.wait_ready(live_world.node_a)

    own_server.restart()

    node.wait_ready(live_world.node_a)  # a new sync: the node re-lists its work
    node.emit("ping")
    assert eventually(lambda: status_of(live_world.node_a) == "online")


def test_every_node_syncs_when_a_dead_server_process_is_buried(server, live_world, sockets):
    """A process that died after storing a task but before publishing it took the event with it: when a
    survivor buries it, every node (connected anywhere) is told to ``sync`` and lists its open runs."""
    node = sockets(server.url, token(live_world.node_b))
    node.wait_ready(live_world.node_b)
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
    SocketProcess.objects.using(LIVE).create(id=f"dead-{random.randrange(10**9)}", beat_at=long_ago)

    node.wait_for("sync", timeout=10)
