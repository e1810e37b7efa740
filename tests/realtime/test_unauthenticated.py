"""Sessions of clients that do not authenticate at the handshake: no database row, bounded memory, and
no raw token kept anywhere for those that do."""

from __future__ import annotations

import time

import pytest
import requests
import websocket
from django.apps import apps
from django.db import connections

from nodes.models import SocketSession
from tests.realtime.helpers import (
    PollingSession,
    eventually,
    expired_token,
    foreign_token,
    make_user,
    token,
)
from tests.realtime.live import LIVE
from vantage6.socketio import local
from vantage6.socketio.local import LocalSessions
from vantage6.socketio.server import Namespace, Server

SECRET = b"a secret of the deployment"


class _Untouchable:
    """A shared store that must not be used."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the shared store was used: {name}")


def _local(**overrides) -> LocalSessions:
    return LocalSessions(**{"secret": SECRET, "capacity": 3, "lifetime": 60, "max_queued": 100, **overrides})


def test_unauthenticated_sessions_stay_in_memory_and_are_bounded():
    server = Server(namespaces={"/tasks": Namespace()}, store=_Untouchable(), anonymous_capacity=3)

    sessions = [server.open_session("polling", {"authorization": "Bearer x"})[0] for _ in range(5)]

    assert len(server.store.local) == 3
    assert server.store.get(sessions[-1].sid) is sessions[-1]


def test_the_oldest_session_is_dropped_for_a_new_one_and_taken_over_afresh():
    sessions = _local()
    first = sessions.open("polling", {"event": "expired_token"})
    first.namespaces["/tasks"] = {"sid": "s", "state": {}}
    for _ in range(3):
        sessions.open("polling", {})

    again = sessions.get(first.sid)

    assert again is not first and again.namespaces == {}
    assert (again.transport, again.auth) == ("polling", {"event": "expired_token"})
    assert len(sessions) == 3


def test_another_instance_with_the_secret_takes_a_session_over():
    opened = _local().open("websocket", {"event": "invalid_token"})

    taken = _local().get(opened.sid)

    assert (taken.sid, taken.transport, taken.auth) == (opened.sid, "websocket", {"event": "invalid_token"})
    assert taken.expires_at == opened.expires_at


def test_forged_or_tampered_sids_are_unknown():
    sid = _local().open("polling", {}).sid
    body, mac = sid.split(".")
    tampered = ("A" if body[0] != "A" else "B") + body[1:]

    for forged in ("no.such", f"{tampered}.{mac}", f"{body}.{mac[:-1]}", f"{body}.é", "."):
        assert _local().get(forged) is None, forged
    assert _local(secret=b"another deployment").get(sid) is None


def test_a_session_ends_at_its_lifetime(monkeypatch):
    sessions = _local(lifetime=5)
    now = 1_800_000_000.0
    monkeypatch.setattr(local.time, "time", lambda: now)
    sid = sessions.open("polling", {}).sid

    now += 5

    assert sessions.get(sid) is None
    assert _local(lifetime=5).get(sid) is None
    assert len(sessions) == 0


def test_a_client_that_does_not_fetch_its_packets_loses_its_session():
    sessions = _local(max_queued=20)
    sid = sessions.open("polling", {}).sid
    sessions.push(sid, ["40/tasks,{}"])

    assert sessions.get(sid) is not None and sessions.pop(sid) == ["40/tasks,{}"]
    sessions.push(sid, ["x" * 12, "y" * 12])
    assert len(sessions) == 0


# --- against a live server ---------------------------------------------------------------------------
def _handshake(http: requests.Session, url: str, authorization: str | None) -> requests.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return http.get(
        f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"}, headers=headers, timeout=10
    )


@pytest.mark.live
def test_a_loop_of_anonymous_handshakes_writes_no_row(server, live_world):
    node = live_world.node_a
    authorizations = [
        None,
        "Bearer nonsense",
        f"Bearer {expired_token(node)}",
        f"Bearer {foreign_token(node)}",
        f"Basic {token(node)}",
    ]
    http = requests.Session()
    rss = server.rss_kib()

    sids = []
    for number in range(500):
        response = _handshake(http, server.url, authorizations[number % len(authorizations)])
        assert response.status_code == 200
        sids.append(response.text.split('"sid":"')[1].split('"')[0])

    assert len(set(sids)) == 500
    assert not SocketSession.objects.using(LIVE).filter(sid__in=sids).exists()
    assert server.rss_kib() - rss < 20_000
    # A handshake with a usable token is stored, for every instance to serve.
    stored = _handshake(http, server.url, f"Bearer {token(node)}").text.split('"sid":"')[1].split('"')[0]
    assert SocketSession.objects.using(LIVE).filter(sid=stored).exists()


@pytest.mark.live
def test_an_anonymous_session_still_gets_its_event(server, live_world):
    session = PollingSession([server.url], expired_token(live_world.node_a))

    session.send("40/tasks,{}")

    packets = session.poll()
    assert packets[0].startswith('40/tasks,{"sid":')
    assert '42/tasks,["expired_token"]' in packets + session.poll()
    assert not SocketSession.objects.using(LIVE).filter(sid=session.sid).exists()


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

    owners = [f"node:{live_world.node_a.pk}", f"user:{user.pk}"]
    assert eventually(lambda: SocketSession.objects.using(LIVE).filter(owner__in=owners).count() == 2)
    for raw in (node_token, user_token):
        assert _rows_containing(raw) == []
        assert _rows_containing(raw.split(".")[2]) == []  # not even the signature
