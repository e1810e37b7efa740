"""A process whose own link to RabbitMQ is cut, while the others keep theirs, loses the room messages its
backlog cannot hold: once it has the broker back, every node of every process hears ``sync``, so that a
node on another process lists the runs whose ``new_task`` went missing. (The others never lost their
broker, so their own reconnect, which tells their nodes ``sync``, never comes.)"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from urllib.parse import urlsplit

import pytest
import requests

from scripts.free_port import free_port
from tests.conftest import requires_services
from tests.realtime.helpers import create_task, make_user, token
from tests.realtime.live import Daphne

pytestmark = [pytest.mark.live, requires_services("rabbitmq")]

# A process whose backlog holds nothing: every room message published while its broker is away is lost.
NO_BACKLOG = [
    sys.executable,
    "-c",
    "import vantage6.layers as l; l.RabbitmqChannelLayer.backlog_limit = 0; "
    "import vantage6.serve as s; s.main()",
]


class Link:
    """A TCP relay to ``upstream`` on a port of its own; ``cut`` closes its connections and refuses new
    ones until ``mend``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.cut_off = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with suppress(OSError):  # the listener closed
            while True:
                client, _ = self.listener.accept()
                if self.cut_off:
                    client.close()
                    continue
                server = socket.create_connection(self.upstream)
                self.open += [client, server]
                for source, target in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError), closing(source), closing(target):
            while data := source.recv(65536):
                target.sendall(data)

    def cut(self) -> None:
        self.cut_off = True
        for connection in self.open:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.open = []

    def mend(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


@contextmanager
def linked(uri: str) -> Iterator[tuple[Link, str]]:
    """A link to the broker of ``uri``, and the URI that goes through it."""
    parts = urlsplit(uri)
    link = Link((parts.hostname or "127.0.0.1", parts.port or 5672))
    try:
        credentials = parts.netloc.rpartition("@")[0]
        yield link, parts._replace(netloc=f"{credentials}@127.0.0.1:{link.port}").geturl()
    finally:
        link.close()


@pytest.mark.usefixtures("broker_only")
def test_nodes_of_other_processes_sync_after_one_lost_its_messages(live_db, live_folder, live_world, sockets):
    broker = os.environ["V6_RABBITMQ_URI"]
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    with linked(broker) as (link, through_link):
        keeping = Daphne(live_db.process_env(V6_RABBITMQ_URI=broker), live_folder)
        cut = Daphne(live_db.process_env(V6_RABBITMQ_URI=through_link), live_folder, NO_BACKLOG)
        try:
            for daphne in (keeping, cut):
                requests.get(f"{daphne.url}/socket.io/?EIO=4&transport=polling", timeout=30)  # it listens
            node = sockets(keeping.url, token(live_world.node_a))
            node.wait_ready(live_world.node_a)
            node.received(1)

            link.cut()
            missed = create_task(cut.url, researcher, live_world.collab_ab)  # its new_task is lost
            link.mend()

            heard = node.heard(10)
        finally:
            for daphne in (cut, keeping):
                daphne.show_log()
                daphne.stop()

    assert ("new_task", {"id": missed, "parent_id": None}) not in heard  # lost indeed
    assert ("sync", None) in heard, heard
    assert ("disconnect", None) not in heard  # not the sync of a reconnect
