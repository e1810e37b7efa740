"""A process whose own link to RabbitMQ is cut, while the others keep theirs, loses the room messages its
backlog cannot hold: once it has the broker back, every node of every process hears ``sync``, so that a
node on another process lists the runs whose ``new_task`` went missing. (The others never lost their
broker, so their own reconnect, which tells their nodes ``sync``, never comes.)"""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import requires_services
from tests.realtime.helpers import create_task, linked, listening, make_user, token
from tests.realtime.live import Daphne

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]

# A process whose backlog holds nothing: every room message published while its broker is away is lost.
NO_BACKLOG = [
    sys.executable,
    "-c",
    "import vantage6.layers as l; l.RabbitmqChannelLayer.backlog_limit = 0; "
    "import vantage6.serve as s; s.main()",
]


@pytest.mark.usefixtures("broker_only")
def test_nodes_of_other_processes_sync_after_one_lost_its_messages(live_db, live_folder, live_world, sockets):
    broker = os.environ["V6_RABBITMQ_URI"]
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    with linked(broker) as (link, through_link):
        keeping = Daphne(live_db.process_env(V6_RABBITMQ_URI=broker), live_folder)
        cut = Daphne(live_db.process_env(V6_RABBITMQ_URI=through_link), live_folder, NO_BACKLOG)
        try:
            for daphne in (keeping, cut):
                listening(daphne.url)
            node = sockets(keeping.url, token(live_world.node_a))
            node.wait_ready(live_world.node_a)
            node.received(1)

            link.cut()
            missed = create_task(cut.url, researcher, live_world.collab_ab)  # its new_task is lost
            link.mend()

            # Its reconnect is refused while the broker still holds the queue of the connection cut (the
            # broker learns of the cut late): seconds, not the 10 a connect usually takes.
            heard = node.heard(60, until=("sync", None))
        finally:
            for daphne in (cut, keeping):
                daphne.show_log()
                daphne.stop()

    assert ("new_task", {"id": missed, "parent_id": None}) not in heard  # lost indeed
    assert ("sync", None) in heard, heard
    assert ("disconnect", None) not in heard  # not the sync of a reconnect
