"""Sessions of clients that do not authenticate at the handshake: bounded memory and lifetime; no
session writes a database row, and no raw token is kept anywhere."""

from __future__ import annotations

import time

import pytest
import requests
import websocket
from django.apps import apps
from django.db import connections

from accounts.models import Authenticatable
from nodes.models import SocketProcess
from tasks.models import PeriodicJob
from tests.realtime.helpers import (
    PollingSession,
    eventually,
    expired_token,
    foreign_token,
    in_memory,
    make_user,
    token,
)
from tests.realtime.live import LIVE
from vantage6.socketio import server as server_module
from vantage6.socketio.server import Namespace, Server
from vantage6.socketio.store import Session

SECRET = b"a secret of the deployment"


def _server(**overrides) -> Server:
    return Server(
        namespaces={"/tasks": Namespace()}, **{"secret": SECRET, "anonymous_capacity": 3, **overrides}
    )


def _open(server: Server, transport: str = "polling") -> Session:
    return in_memory(lambda: server.open_session(transport, {"authorization": "Bearer x"}))[0]


@pytest.mark.django_db  # the handshake's check may use the database
def test_unauthenticated_sessions_are_bounded_the_oldest_dropped_for_a_new_one():
    server = _server()

    async def scenario() -> list[Session]:
        return [(await server.open_session("polling", {"authorization": "Bearer x"}))[0] for _ in range(5)]

    sessions = in_memory(scenario)

    assert list(server.sessions) == [session.sid for session in sessions[2:]]


class _Websocket:
    async def send_packets(self, packets: list[str]) -> None: ...

    async def close(self) -> None:
        raise AssertionError("a websocket is not dropped for a new session")


@pytest.mark.django_db  # the handshake's check may use the database
def test_unauthenticated_websockets_are_bounded_by_their_connections_not_by_the_capacity():
    server = _server()

    async def scenario() -> list[Session]:
        return [(await server.open_session("websocket", {}, _Websocket()))[0] for _ in range(5)]

    sessions = in_memory(scenario)

    assert list(server.sessions) == [session.sid for session in sessions]


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_sid_names_its_process_and_forged_or_tampered_sids_are_unknown():
    server = _server()
    sid = _open(server).sid
    body, mac = sid.split(".")
    tampered = ("A" if body[0] != "A" else "B") + body[1:]

    assert server.owner_of(sid) == server.channel
    assert len(sid) < 100
    for forged in ("no.such", f"{tampered}.{mac}", f"{body}.{mac[:-1]}", f"{body}.é", ".", ""):
        assert server.owner_of(forged) is None, forged
    assert _server(secret=b"another deployment").owner_of(sid) is None


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_session_ends_at_its_lifetime(monkeypatch):
    server = _server(ping_interval=2, ping_timeout=3)
    now = 1_800_000_000.0
    monkeypatch.setattr(server_module.time, "time", lambda: now)
    session = _open(server)

    async def check() -> None:
        await server._check(session)

    now += 4
    in_memory(check)
    assert session.sid in server.sessions
    now += 1
    in_memory(check)
    assert server.sessions == {}


@pytest.mark.django_db  # the handshake's check may use the database
def test_a_client_that_does_not_fetch_its_packets_loses_its_session():
    server = _server(max_queued=20)
    session = _open(server)

    in_memory(lambda: server.send(session, ["40/tasks,{}"]))
    assert session.outbox == ["40/tasks,{}"] and session.sid in server.sessions
    in_memory(lambda: server.send(session, ["x" * 12]))
    assert server.sessions == {}


# --- against a live server ---------------------------------------------------------------------------
def _handshake(http: requests.Session, url: str, authorization: str | None) -> requests.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return http.get(
        f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"}, headers=headers, timeout=10
    )


@pytest.mark.live
def test_a_loop_of_handshakes_writes_no_row(server, live_world):
    node = live_world.node_a
    authorizations = [
        None,
        "Bearer nonsense",
        f"Bearer {expired_token(node)}",
        f"Bearer {foreign_token(node)}",
        f"Basic {token(node)}",
    ]
    usable = f"Bearer {token(node)}"  # its login's row written now
    http = requests.Session()
    rss = server.rss_kib()
    rows = _row_counts()

    sids = []
    for number in range(500):
        response = _handshake(http, server.url, authorizations[number % len(authorizations)])
        assert response.status_code == 200
        sids.append(response.text.split('"sid":"')[1].split('"')[0])

    assert len(set(sids)) == 500
    assert server.rss_kib() - rss < 20_000
    # Nor does a handshake with a usable token: sessions live in the memory of their process.
    assert _handshake(http, server.url, usable).status_code == 200
    # No table grew (the live server's housekeeping may still bury an earlier test's sockets meanwhile).
    after = _row_counts()
    assert {table: count for table, count in after.items() if count > rows[table]} == {}


@pytest.mark.live
def test_an_anonymous_session_still_gets_its_event(server, live_world):
    session = PollingSession([server.url], expired_token(live_world.node_a))

    session.send("40/tasks,{}")

    packets = session.poll()
    assert packets[0].startswith('40/tasks,{"sid":')
    assert '42/tasks,["expired_token"]' in packets + session.poll()


@pytest.mark.live
def test_an_anonymous_websocket_is_dropped_at_the_end_of_its_lifetime(server):
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
    ws.settimeout(10)
    started = time.monotonic()
    try:
        assert ws.recv().startswith("0")
        while (packet := ws.recv()) == "2" and time.monotonic() - started < 10:
            ws.send("3")  # a live client: it answers the server's PINGs
        assert packet == ""  # closed
    finally:
        ws.close()
    # pingInterval + pingTimeout of the test server: 4 s, checked every pingInterval (2 s).
    assert 4 <= time.monotonic() - started < 9


def _row_counts() -> dict[str, int]:
    connection = connections[LIVE]
    counts = {}
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            # The liveness row of the server process and the rows of its periodic jobs (written on its
            # first housekeeping round, which may fall within the loop), whatever its sockets.
            if model in (SocketProcess, PeriodicJob):
                continue
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    return counts


def _rows_containing(text: str) -> list[str]:
    """``table: row`` of every row of every table of the live database whose text contains ``text``."""
    connection = connections[LIVE]
    found = []
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT * FROM {table}")
            found += [f"{table}: {row}" for row in cursor.fetchall() if text in str(row)]
    return found


@pytest.mark.live
def test_no_table_keeps_the_raw_token_of_a_connected_node_or_user(server, live_world, sockets):
    user = make_user(live_world.org_a, event_scope="COLLABORATION")
    node_token, user_token = token(live_world.node_a), token(user)
    node = sockets(server.url, node_token)
    node.wait_ready(live_world.node_a)
    polling = PollingSession([server.url], user_token)
    polling.send("40/tasks,{}")
    polling.poll()

    identities = Authenticatable.objects.using(LIVE).filter(pk__in=[live_world.node_a.pk, user.pk])
    assert eventually(lambda: identities.filter(status="online").count() == 2)
    for raw in (node_token, user_token):
        assert _rows_containing(raw) == []
        assert _rows_containing(raw.split(".")[2]) == []  # not even the signature
