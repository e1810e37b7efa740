"""A server process that went two beat periods without a beat is not waited for by a change of rights,
long before it is buried: a killed one delays no change any more, and a stopped one that runs again
checks its sockets before they get anything, so none keeps a room it lost while it was not waited for.
One that only missed a confirmation, and beats, is waited for by the next change all the same."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from nodes.models import SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import create_task, eventually, make_user, token
from tests.realtime.live import FAST_TIMERS, LIVE, Daphne
from tests.realtime.test_rights_answered_after_recheck import _new_task_heard, _witness
from tests.realtime.test_rights_recheck_faults import _timed, pair  # noqa: F401 - pair: a fixture
from tests.realtime.test_socket_rights import _call

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]

BOUND = 1  # publish_timeout: how long a change waits for the confirmations of the live processes
LAPSE = 2 * int(FAST_TIMERS["V6_SOCKET_PING_INTERVAL"])  # two beat periods
# The clients' sockets outlive a stop of a few lapses (they expect a ping every interval + timeout), and
# a silent process is buried only after 2 intervals + timeout + interval + forward timeout (31 s).
PING_TIMEOUT = 20


@pytest.fixture(autouse=True)
def patient_clients(live_db, monkeypatch) -> None:
    """The pair's clients outlive a stop of a few lapses."""
    monkeypatch.setitem(live_db.env, "V6_SOCKET_PING_TIMEOUT", str(PING_TIMEOUT))


def _beating() -> int:
    """The processes whose last beat is within the lapse."""
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=LAPSE)
    return SocketProcess.objects.using(LIVE).filter(beat_at__gte=since).count()


def _both_beat(servers: list[Daphne]) -> None:
    for server in servers:  # a process beats (and is waited for) from its first request on
        assert requests.get(f"{server.url}/api/version", timeout=10).status_code == 200
    rows = SocketProcess.objects.using(LIVE).values_list("id", "beat_at")
    assert eventually(lambda: _beating() == 2, timeout=20), (datetime.now(UTC), list(rows))


def test_a_killed_process_delays_no_change_once_it_missed_two_beats(pair, live_world, sockets):  # noqa: F811
    live, victim = pair
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    node = sockets(victim.url, token(live_world.node_a), transports=["websocket"])
    node.wait_ready(live_world.node_a)
    _both_beat(pair)
    url = f"{live.url}/api/collaboration/{live_world.collab_ab.pk}/organization"

    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    assert eventually(lambda: _beating() == 1, timeout=3 * LAPSE)
    waited = [
        _timed(lambda method=method: _call(method, url, admin, id=live_world.org_a.pk))
        for method in ("DELETE", "POST")
    ]

    assert SocketProcess.objects.using(LIVE).count() > _beating()  # not buried yet: its row is still there
    assert max(waited) < BOUND / 2, waited


def test_a_stopped_process_that_runs_again_delivers_nothing_of_a_room_its_socket_lost(
    pair,  # noqa: F811
    live_world,
    sockets,
):
    live, victim = pair
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    node = sockets(victim.url, token(live_world.node_a), transports=["websocket"])
    node.wait_ready(live_world.node_a)
    witness = _witness(sockets, victim.url, live_world, node)  # node B, on the same process, keeps the room
    # A user of B on the other process: once it heard the new task, the event is on its way to the stopped
    # one, whose sockets must not get it before it checked them again.
    observer = sockets(live.url, token(make_user(live_world.org_b, event_scope="COLLABORATION")))
    observer.wait_joined()
    sid = node.client.eio.sid
    _both_beat(pair)
    url = f"{live.url}/api/collaboration/{live_world.collab_ab.pk}/organization"

    os.kill(victim.process.pid, signal.SIGSTOP)
    try:
        assert eventually(lambda: _beating() == 1, timeout=3 * LAPSE)
        # Answered without the stopped process, whose queue holds the recheck, then the new task's event.
        assert _timed(lambda: _call("DELETE", url, admin, id=live_world.org_a.pk)) < BOUND / 2
        researcher = make_user(live_world.org_b, roles=("Researcher",))
        task_id = create_task(live.url, researcher, live_world.collab_ab, [live_world.org_b])
        observer.wait_for("new_task", where=lambda data: data["id"] == task_id)
        time.sleep(0.2)  # the broker's routing to the stopped process's queue, after its publication
    finally:
        os.kill(victim.process.pid, signal.SIGCONT)

    assert witness.wait_for("new_task", where=lambda data: data["id"] == task_id)["id"] == task_id
    assert [data for name, data in node.received(0.5) if name == "new_task"] == []
    assert node.client.eio.sid == sid  # checked again on the same connection, not dropped


def test_a_process_that_missed_one_confirmation_is_still_waited_for(pair, live_world, sockets):  # noqa: F811
    live, slow = pair
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    node = sockets(slow.url, token(live_world.node_a), transports=["websocket"])
    node.wait_ready(live_world.node_a)
    witness = _witness(sockets, slow.url, live_world, node)
    _both_beat(pair)
    url = f"{live.url}/api/collaboration/{live_world.collab_ab.pk}/organization"
    os.kill(slow.process.pid, signal.SIGSTOP)
    try:
        assert _timed(lambda: _call("DELETE", url, admin, id=live_world.org_a.pk)) >= BOUND  # not confirmed
    finally:
        os.kill(slow.process.pid, signal.SIGCONT)
    _call("POST", url, admin, id=live_world.org_a.pk)

    # Stalled again while the next change waits for it, for less than the bound: the change waits for it.
    os.kill(slow.process.pid, signal.SIGSTOP)
    waking = threading.Timer(BOUND / 2, os.kill, (slow.process.pid, signal.SIGCONT))
    waking.start()
    try:
        waited = _timed(lambda: _call("DELETE", url, admin, id=live_world.org_a.pk))
    finally:
        waking.join()

    assert BOUND / 2 <= waited < BOUND
    assert _new_task_heard(live_world, live.url, witness, node) == []
