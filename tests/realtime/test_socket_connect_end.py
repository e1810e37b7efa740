"""A session that ends while its connect is still admitted (its identity and rights being read) leaves its
identity as its end finds it: its disconnect handler runs once the admission is done, and undoes what it
recorded. Before, it ran first, found nothing to undo, and the admission left the node online, with a
connection row that no socket holds, until its next connect or the heartbeat sweep.

A long-polling client ends its session so: python-socketio's gives a connect up after 1 s without the
acknowledgement, and sends its CLOSE in a POST of its own while the one with the CONNECT is still answered.
(A websocket's frames are handled one after the other: its close comes after the admission.)"""

from __future__ import annotations

import threading

import pytest
import requests

from accounts.models import Authenticatable
from nodes.models import SocketConnection
from tests.realtime.helpers import PollingSession, eventually, hears, make_user, token
from tests.realtime.live import HOOKED, LIVE, LONG_PINGS, hooked_servers, open_tasks_socket


@pytest.fixture(scope="module")
def hooked(live_db, live_folder):
    # Long pings: the test reads its witness's socket only when it waits for a frame.
    with hooked_servers(live_db, live_folder, [HOOKED], **LONG_PINGS) as (folder, (host,)):
        yield folder, host


def _status(node_id: int) -> str:
    return Authenticatable.objects.using(LIVE).get(pk=node_id).status


@pytest.mark.live
def test_a_node_whose_session_ends_while_its_connect_is_admitted_is_offline_with_no_connection(
    hooked, live_world
):
    folder, host = hooked
    node = live_world.node_a
    witness = open_tasks_socket(host.port, token(make_user(live_world.org_b, event_scope="COLLABORATION")))
    armed, held = folder / f"{host.port}.hold-identified", folder / f"{host.port}.identified"
    try:
        assert hears(witness, lambda frame: frame.startswith('40/tasks,{"sid":'), 10)
        armed.touch()
        polling = PollingSession([host.url], token(node))
        url = f"{host.url}/socket.io/?EIO=4&transport=polling&sid={polling.sid}"
        connecting = threading.Thread(
            target=requests.post, args=(url,), kwargs={"data": "40/tasks,{}"}, daemon=True
        )
        connecting.start()
        assert eventually(held.exists)  # recorded online, with its connection; the rights read
        assert requests.post(url, data="1", timeout=10).text == "ok"  # the CLOSE: the session ends
        armed.unlink()

        gone = SocketConnection.objects.using(LIVE).filter(identity_id=node.pk)
        assert eventually(lambda: _status(node.pk) == "offline" and not gone.exists(), 10)
        assert not hears(witness, lambda frame: '"node-online"' in frame, 1)
    finally:
        armed.unlink(missing_ok=True)
        witness.close()
