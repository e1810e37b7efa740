"""A request refused because SQLite's write lock stayed taken ("database is locked", answered 503) is no
database outage: the database answered, and its readers never waited. It used to count as one, and its
end told every node of the process ``sync`` (each lists its runs again) though none missed a task."""

from __future__ import annotations

import sqlite3
import sys
import uuid

import pytest
import requests
from django.utils import timezone

from nodes.models import SocketProcess
from tests.realtime.helpers import eventually, make_world, token
from tests.realtime.live import LIVE, Daphne, LiveDatabase

pytestmark = pytest.mark.live

# The server, with SQLite's lock wait shortened from its 20 seconds to one.
SHORT_LOCK_WAIT = [
    sys.executable,
    "-c",
    "import vantage6.settings as s; s.DATABASES['default']['OPTIONS']['timeout'] = 1; "
    "import vantage6.serve as v; v.main()",
]


@pytest.fixture
def sqlite_db(tmp_path, django_db_blocker):
    with django_db_blocker.unblock():
        database = LiveDatabase(tmp_path)  # an SQLite file, whatever database the suite runs on
        try:
            yield database
        finally:
            database.drop()


def test_a_lock_wait_that_ends_in_503_tells_nodes_no_sync(sqlite_db, tmp_path, sockets):
    world = make_world()
    api_key = str(uuid.uuid4())
    world.node_b.set_api_key(api_key)
    world.node_b.save(using=LIVE, update_fields=["api_key_hash"])
    server = Daphne(sqlite_db.process_env(), tmp_path, SHORT_LOCK_WAIT)
    try:
        node = sockets(server.url, token(world.node_a))
        node.wait_ready(world.node_a)
        node.received(1)

        writer = sqlite3.connect(tmp_path / "live.sqlite3", isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            login = requests.post(f"{server.url}/api/token/node", json={"api_key": api_key}, timeout=30)
        finally:
            writer.close()
        released = timezone.now()
        # A housekeeping round (every 2 s) reached the database after the lock, as its beat shows: the end
        # of an outage, told at once when the round reaches the database, would be heard within a second.
        assert eventually(lambda: SocketProcess.objects.using(LIVE).filter(beat_at__gt=released).exists())
        heard = node.received(1)
    finally:
        server.stop()
        server.show_log()

    assert login.status_code == 503, login.text
    assert ("sync", None) not in heard, heard
