"""A graceful stop answers the long-polling GETs it forwarded to another process before it began stopping:
the session lives on in its owner, so the GET is answered (with the packets its owner handed it, or with a
NOOP) instead of dropped, and no packet the owner handed it is lost."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import requires_services
from tests.realtime.helpers import PollingSession, listening, token
from tests.realtime.live import LONG_PINGS, Daphne
from vantage6.socketio import packets as p

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]


@pytest.mark.usefixtures("broker_only")
def test_a_stop_answers_the_get_it_forwarded_and_loses_no_packet(live_db, live_folder, live_world):
    # Pings far apart: the forwarded GET is held by the owner until the stop, not answered by a ping.
    env = live_db.process_env(V6_RABBITMQ_URI=os.environ["V6_RABBITMQ_URI"], **LONG_PINGS)
    stopping, owner = Daphne(env, live_folder), Daphne(env, live_folder)
    try:
        listening(stopping.url)
        session = PollingSession([owner.url], token(live_world.node_a))
        params = {"EIO": "4", "transport": "polling", "sid": session.sid}
        with ThreadPoolExecutor(1) as pool:
            forwarded = pool.submit(
                requests.get,
                f"{stopping.url}/socket.io/",
                params=params,
                headers=session.http.headers,
                timeout=30,
            )
            time.sleep(1)  # forwarded to the owner, which holds it
            stopping.process.send_signal(signal.SIGTERM)
            # The connect's acknowledgement goes to the GET the owner holds for the stopping process.
            session.send("40/tasks,{}")
            answer = forwarded.result()
        assert stopping.process.wait(30) == 0
        packets = answer.text.split(p.RECORD_SEPARATOR)
        deadline = time.monotonic() + 5
        while not any(packet.startswith("40/tasks,") for packet in packets) and time.monotonic() < deadline:
            packets += session.poll()  # the owner still has the session
    finally:
        for daphne in (stopping, owner):
            daphne.show_log()
            daphne.stop()

    assert answer.status_code == 200, answer.text
    assert answer.headers["Connection"] == "close"
    acknowledged = [packet for packet in packets if packet.startswith("40/tasks,")]
    assert len(acknowledged) == 1 and '"sid"' in acknowledged[0], packets
