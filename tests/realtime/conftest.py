"""Fixtures of the real-time tests: a live database, daphne servers on it, and socket clients."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from nodes.models import SocketProcess
from tests.conftest import requires_services
from tests.realtime.helpers import ABSENT_BROKER, NodeSocket, eventually, make_world
from tests.realtime.live import LIVE, Daphne, LiveDatabase


@pytest.fixture(scope="session")
def live_folder():
    with tempfile.TemporaryDirectory(prefix="v6-live-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def live_db(live_folder, django_db_blocker):
    """A committed database for live servers: on the PostgreSQL server of V6_DATABASE_URL if there is
    one (instances can share it), else an SQLite file."""
    url = os.environ.get("V6_DATABASE_URL", "")
    with django_db_blocker.unblock():
        database = LiveDatabase(live_folder, postgres_url=url if url.startswith("postgres") else None)
        try:
            yield database
        finally:
            database.drop()


@pytest.fixture
def live_data(live_db, django_db_blocker):
    """Access to the live database from the test (``.using(LIVE)``)."""
    with django_db_blocker.unblock():
        yield live_db


@pytest.fixture
def live_world(live_data):  # noqa: ARG001 - needs the live database reachable
    return make_world()


def _daphne(live_db, live_folder, **env):
    daphne = Daphne(live_db.process_env(**env), live_folder)
    yield daphne
    daphne.stop()


def _processes() -> set[str]:
    """The ids of the liveness rows of the server processes on the live database."""
    return set(SocketProcess.objects.using(LIVE).values_list("id", flat=True))


class SharedServer:
    """The daphne with the in-memory channel layer that the tests share. Servers on a broker wait, at each
    change of rights, until every process with a liveness row confirmed it, at most 1 s: this one never
    hears them, so it is paused (stopped, its row dropped) while they serve a test."""

    def __init__(self, live_db: LiveDatabase, folder: Path, blocker) -> None:
        self.live_db, self.folder, self.blocker = live_db, folder, blocker
        self.daphne: Daphne | None = None
        self.process, self.pid = "", 0  # the id of its liveness row, and the pid of its process

    def running(self) -> Daphne:
        if self.daphne is None:
            self.daphne = Daphne(self.live_db.process_env(), self.folder)
            self._identify(self.daphne)
        elif self.daphne.process is None:
            self.daphne.start()
            self._identify(self.daphne)
        return self.daphne

    def _identify(self, daphne: Daphne) -> None:
        with self.blocker.unblock():
            known = _processes()
            # Its first request starts its heartbeat round, whose first beat writes its row.
            requests.get(f"{daphne.url}/api/version", timeout=30).raise_for_status()
            (self.process,) = eventually(lambda: _processes() - known)
        self.pid = daphne.process.pid

    def pause(self) -> None:
        if self.daphne is None or self.daphne.process is None:
            return
        ours = self.daphne.process.pid == self.pid  # not a process a test started again
        self.daphne.stop()
        if ours:
            with self.blocker.unblock():
                SocketProcess.objects.using(LIVE).filter(id=self.process).delete()


@pytest.fixture(scope="session")
def _shared_server(live_db, live_folder, django_db_blocker):
    shared = SharedServer(live_db, live_folder, django_db_blocker)
    yield shared
    shared.pause()


@pytest.fixture
def server(_shared_server):
    """A daphne on the live database with the in-memory channel layer, shared by the tests."""
    daphne = _shared_server.running()
    yield daphne
    daphne.show_log()


@pytest.fixture
def broker_only(_shared_server):
    """The shared in-memory server is paused for the test, whose servers on a broker then wait for no
    process that cannot hear them (see ``SharedServer``)."""
    _shared_server.pause()


@pytest.fixture(scope="module")
def unswept_server(live_db, live_folder):
    """A daphne whose heartbeat round (and sweep) comes only once a minute: what happens sooner is
    the work of something else."""
    yield from _daphne(live_db, live_folder, V6_SOCKET_PING_INTERVAL="60", V6_SOCKET_PING_TIMEOUT="60")


@pytest.fixture
def own_server(live_db, live_folder):
    """A daphne of the test's own (to restart, for instance)."""
    for daphne in _daphne(live_db, live_folder):
        yield daphne
        daphne.show_log()


@pytest.fixture(scope="module")
def cluster(live_db, live_folder):
    """Two daphne instances sharing the live database and RabbitMQ."""
    rabbitmq = os.environ["V6_RABBITMQ_URI"]
    for first in _daphne(live_db, live_folder, V6_RABBITMQ_URI=rabbitmq):
        for second in _daphne(live_db, live_folder, V6_RABBITMQ_URI=rabbitmq):
            yield first, second


@pytest.fixture
def instances(cluster, broker_only):  # noqa: ARG001
    yield cluster
    for daphne in cluster:
        daphne.show_log()


@pytest.fixture
def sockets():
    """Open ``NodeSocket``s; all are closed at the end of the test."""
    opened: list[NodeSocket] = []

    def open_socket(*args, **kwargs) -> NodeSocket:
        opened.append(NodeSocket(*args, **kwargs))
        return opened[-1]

    yield open_socket
    for socket in opened:
        socket.close()


@pytest.fixture(scope="module")
def unpinged(live_db, live_folder):
    """A live server with no Engine.IO ping round within a test: a connection closes by the test's doing."""
    env = live_db.process_env(V6_LOG_LEVEL="info", V6_SOCKET_PING_INTERVAL="60", V6_SOCKET_PING_TIMEOUT="60")
    daphne = Daphne(env, live_folder)
    yield daphne
    daphne.stop()


# The HTTP protocol's timers, short: what a slow client does shows within seconds.
HASTY = (
    "import vantage6.http as h, vantage6.websocket as w; h.HEAD_SECONDS = h.BODY_SECONDS = h.WRITE_SECONDS = "
    "w.CLOSE_SECONDS = 1; import vantage6.serve as s; s.main()"
)


@pytest.fixture(scope="module")
def hasty(live_db, live_folder):
    """A live server whose HTTP timers (head, body, write, websocket close) are 1 s."""
    daphne = Daphne(live_db.process_env(V6_LOG_LEVEL="info"), live_folder, [sys.executable, "-c", HASTY])
    yield daphne
    daphne.stop()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("rabbitmq", marks=requires_services("rabbitmq")),
        pytest.param("absent", id="broker-absent"),
    ],
)
def family(request, live_db, live_folder):
    """One server of two processes on the live database, with RabbitMQ or with a broker that is absent."""
    broker = os.environ["V6_RABBITMQ_URI"] if request.param == "rabbitmq" else ABSENT_BROKER
    server = Daphne(live_db.process_env(V6_RABBITMQ_URI=broker), live_folder, workers=2)
    yield server
    server.stop()
    server.show_log()
