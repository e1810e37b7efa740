"""A server process that stalls, then is killed, while a change of rights waits for its confirmation: the
change is answered within the bound all the same, the sockets of the live process moved, and so are
the changes after it until and once the dead process is buried."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest
import requests

from nodes.models import SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import eventually, joined, make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.test_rights_answered_after_recheck import _new_task_heard, _witness
from tests.realtime.test_socket_rights import _call

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]

BOUND = 1  # publish_timeout: how long a change waits for the confirmations


@pytest.fixture
def pair(live_db, live_folder):
    """Two server processes of the test's own on RabbitMQ (one of them is killed or stopped)."""
    env = live_db.process_env(V6_RABBITMQ_URI=os.environ["V6_RABBITMQ_URI"])
    servers = [Daphne(env, live_folder), Daphne(env, live_folder)]
    yield servers
    for server in servers:
        with contextlib.suppress(ProcessLookupError, AttributeError):  # AttributeError: stopped by the test
            os.kill(server.process.pid, signal.SIGCONT)  # if the test failed while it was stopped
        server.stop()
        server.show_log()


def _timed(call) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def _watched(pair: list[Daphne], live_world, sockets) -> tuple[str, object, object, str]:
    """Once both processes of ``pair`` beat (and are waited for): a Root user's token, a node's socket and
    a witness's on the first, and the URL of the organizations of the collaboration they are in."""
    live = pair[0]
    admin = token(make_user(live_world.org_a, roles=("Root",)))
    node = sockets(live.url, token(live_world.node_a), transports=["websocket"])
    node.wait_ready(live_world.node_a)
    witness = _witness(sockets, live.url, live_world, node)
    for server in pair:  # a process beats (and is waited for) from its first request on
        assert requests.get(f"{server.url}/api/version", timeout=10).status_code == 200
    assert eventually(lambda: SocketProcess.objects.using(LIVE).count() >= 2, timeout=20)
    return admin, node, witness, f"{live.url}/api/collaboration/{live_world.collab_ab.pk}/organization"


def test_a_process_killed_while_a_change_waits_for_it_delays_the_answer_by_the_bound_only(
    pair, live_world, sockets
):
    live, victim = pair
    admin, node, witness, url = _watched(pair, live_world, sockets)
    processes = SocketProcess.objects.using(LIVE)
    before = processes.count()
    os.kill(victim.process.pid, signal.SIGSTOP)  # it hears the recheck no more, and does not confirm

    killer = threading.Timer(BOUND / 2, os.kill, (victim.process.pid, signal.SIGKILL))
    killer.start()
    waited = _timed(lambda: _call("DELETE", url, admin, id=live_world.org_a.pk))
    killer.join()

    assert BOUND <= waited < 3 * BOUND
    assert _new_task_heard(live_world, live.url, witness, node) == []
    # Buried by the survivor once silent long enough (its heartbeat round), and then no longer waited
    # for: a change is answered within the bound, its socket moved.
    assert eventually(lambda: processes.count() < before, timeout=30)
    assert _timed(lambda: _call("POST", url, admin, id=live_world.org_a.pk)) < 3 * BOUND
    node.wait_for("message", where=joined)


def test_a_process_that_stopped_gracefully_is_not_waited_for(pair, live_world, sockets, broker_only):  # noqa: ARG001
    live, stopped = pair
    admin, node, witness, url = _watched(pair, live_world, sockets)
    processes = SocketProcess.objects.using(LIVE)
    # The pair's rows only: those of processes other tests ended (a killed one is waited for) are buried.
    assert eventually(lambda: processes.count() == 2, timeout=30)
    stopped.stop()  # SIGTERM: it drops its sockets, answers its requests, says it ended and exits

    waited = _timed(lambda: _call("DELETE", url, admin, id=live_world.org_a.pk))

    assert processes.count() == 2  # its liveness row waits for a heartbeat round to bury it
    assert waited < BOUND
    assert _new_task_heard(live_world, live.url, witness, node) == []
