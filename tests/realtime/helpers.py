"""Clients and data for the real-time tests.

``NodeSocket`` is a python-socketio client set up exactly as the official node sets up its own;
``PollingSession`` speaks the long-polling protocol with raw HTTP, so each request can go to any host.
"""

from __future__ import annotations

import base64
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import jwt
import psycopg2
import requests
import socketio
import websocket
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.conf import settings
from django.test import override_settings

from accounts.models import LoginSession, Role, Rule, User
from accounts.tokens import AccessToken, login_tokens
from collaborations.models import Collaboration, Organization
from nodes.models import Node
from scripts.free_port import free_port
from tasks.models import Run, Task
from tests.factories import PASSWORD
from tests.realtime.live import LIVE

TASKS = "/tasks"


class _Recorder(socketio.ClientNamespace):
    def __init__(self, namespace: str, events: queue.Queue, heard: Callable[[str, object], None]) -> None:
        super().__init__(namespace)
        self.events = events
        self.heard = heard

    def trigger_event(self, event: str, *args) -> None:
        self.heard(event, args[0] if args else None)
        self.events.put((event, args[0] if args else None))


# What python-socketio's connect raises when the namespace's acknowledgement did not come within its wait.
GAVE_UP = "One or more namespaces failed to connect"


class NodeSocket:
    """``socketio.Client(request_timeout=60)`` + a ``/tasks`` namespace class +
    ``connect(url, headers={"Authorization": ...}, wait=False)``, as in the node. ``heard`` is called
    with each event as it arrives, in the client's thread (``events`` queues them for the test).

    ``gave_up``: when the client gave up a connect itself. Its reconnects wait 1 s for the namespace's
    acknowledgement; without it by then, the client closes the session it opened (which the server may
    have admitted meanwhile: the node's newest socket closes) and tries again later."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transports: list[str] | None = None,
        heard: Callable[[str, object], None] = lambda _event, _data: None,
    ) -> None:
        self.events: queue.Queue = queue.Queue()
        self.client = socketio.Client(request_timeout=60)
        self.client.register_namespace(_Recorder(TASKS, self.events, heard))
        self.gave_up: list[float] = []
        connect = self.client.connect

        def noting_give_ups(*args, **kwargs) -> None:
            try:
                connect(*args, **kwargs)
            except socketio.exceptions.ConnectionError as exc:
                if str(exc).startswith(GAVE_UP):
                    self.gave_up.append(time.monotonic())
                raise

        self.client.connect = noting_give_ups  # what its reconnects call
        extra = {"transports": transports} if transports else {}
        self.client.connect(url, headers={"Authorization": f"Bearer {token}"}, wait=False, **extra)

    def wait_for(self, event: str, timeout: float = 10, where=lambda _: True) -> object:
        """The data of the next ``event`` (matching ``where``); earlier other events are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} within {timeout} s")
            try:
                name, data = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if name == event and where(data):
                return data

    def wait_ready(self, node: Node) -> None:
        """Until the node got ``sync`` and joined its last room (events to its rooms reach it then)."""
        self.wait_for("sync")
        last_room = f"collaboration_{node.collaboration_id}_organization_{node.organization_id}"
        self.wait_for("message", where=lambda text: text.endswith(f"joined room {last_room}"))

    def wait_joined(self, timeout: float = 10) -> None:
        """Until the server told the socket it joined a room (a user's rooms are joined all at once)."""
        self.wait_for("message", timeout, where=joined)

    def heard(self, seconds: float, until: tuple[str, object] | None = None) -> list[tuple[str, object]]:
        """Everything the client heard within ``seconds`` (or up to the event ``until``), its own
        connects and disconnects too."""
        got, deadline = [], time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got.append(self.events.get(timeout=remaining))
            except queue.Empty:
                break
            if got[-1] == until:
                break
        return got

    def received(self, seconds: float) -> list[tuple[str, object]]:
        """Every server event received within ``seconds`` (not the client's own connect/disconnect)."""
        return [(name, data) for name, data in self.heard(seconds) if name not in ("connect", "disconnect")]

    def emit(self, event: str, data: object = None) -> None:
        self.client.emit(event, data, namespace=TASKS)

    @property
    def transport(self) -> str:
        return self.client.transport()

    def state(self) -> str:
        """The client's own account, for a failure message: a client neither connected nor reconnecting
        was dropped while its reconnect ended (python-socketio starts no other one then)."""
        client = self.client
        return (
            f"connected={client.connected} engine.io={client.eio.state} "
            f"transport={client.eio.current_transport} reconnecting={client._reconnect_task is not None} "
            f"gave_up={len(self.gave_up)}"
        )

    def close(self) -> None:
        """Disconnect for good: ``disconnect`` alone leaves a reconnect under way running, and the socket
        could come back during a later test."""
        self.client.reconnection = False  # a drop from now on starts no reconnect
        self.client.shutdown()  # ends a reconnect under way, waiting for it
        if self.client.connected:  # the reconnect under way connected before it ended
            self.client.disconnect()


def joined(text: object) -> bool:
    """Whether a ``message`` event tells its socket it joined a room."""
    return isinstance(text, str) and "joined room" in text


ABSENT_BROKER = "amqp://guest:guest@127.0.0.1:9/absent"  # a RabbitMQ URI where nothing listens


def process_of(socket: NodeSocket) -> str:
    """The server process of a socket: its sid carries the channel of its process, whose queue names it."""
    body = socket.client.eio.sid.partition(".")[0]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[9:].decode().partition("!")[0]


def make_run(world: LiveWorld, organization: Organization | None = None) -> Run:
    """A run of a fresh task of collaboration AB, for ``organization`` (A by default)."""
    task = Task(
        collaboration=world.collab_ab, image="i", job_id=uuid.uuid4().int % 10**9, init_org=world.org_a
    )
    task.save(using=LIVE)
    run = Run(task=task, organization=organization or world.org_a)
    run.save(using=LIVE)
    return run


def ready_nodes(sockets, url: str, *nodes: Node) -> list[NodeSocket]:
    """A socket of each of ``nodes`` (in this order, each ready before the next connects)."""
    opened = []
    for node in nodes:
        socket = sockets(url, token(node))
        socket.wait_ready(node)
        opened.append(socket)
    return opened


def status_changes(socket: NodeSocket, seconds: float = 1.5) -> list[dict]:
    """The ``algorithm_status_change`` events ``socket`` receives within ``seconds``."""
    return [data for name, data in socket.received(seconds) if name == "algorithm_status_change"]


def apart(sockets, url: str, first: str, second: str) -> tuple[NodeSocket, NodeSocket]:
    """A websocket of token ``first`` and one of ``second`` on different processes of the server."""
    one = sockets(url, first, transports=["websocket"])
    for _ in range(32):
        other = sockets(url, second, transports=["websocket"])
        if process_of(other) != process_of(one):
            return one, other
        other.close()
    raise AssertionError("every socket landed on one process")


class PollingSession:
    """Engine.IO long-polling by hand; ``hosts`` are used in turn, one per request."""

    def __init__(self, hosts: list[str], token: str, *, headers: dict[str, str] | None = None) -> None:
        self.hosts = hosts
        self.turn = 0
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", **(headers or {})})
        self.sid = json.loads(self._request("GET").text[1:])["sid"]

    def _request(self, method: str, data: str | None = None) -> requests.Response:
        host = self.hosts[self.turn % len(self.hosts)]
        self.turn += 1
        params = {"EIO": "4", "transport": "polling", **({"sid": self.sid} if self.turn > 1 else {})}
        response = self.http.request(method, f"{host}/socket.io/", params=params, data=data, timeout=30)
        response.raise_for_status()
        return response

    def send(self, *packets: str) -> None:
        assert self._request("POST", "\x1e".join(packets)).text == "ok"

    def poll(self) -> list[str]:
        return self._request("GET").text.split("\x1e")

    def events(self, seconds: float) -> list[list]:
        """Socket.IO events of ``/tasks`` received within ``seconds``; PINGs are answered."""
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            for packet in self.poll():
                if packet == "2":
                    self.send("3")
                elif packet.startswith("42/tasks,"):
                    got.append(json.loads(packet[len("42/tasks,") :]))
        return got


# --- data in the live database ---------------------------------------------------------------------------
@dataclass
class LiveWorld:
    org_a: Organization
    org_b: Organization
    org_c: Organization
    collab_ab: Collaboration
    collab_c: Collaboration
    node_a: Node
    node_b: Node
    node_c: Node


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def make_world() -> LiveWorld:
    """Organizations A and B in collaboration AB, C alone in collaboration C, a node for each."""
    tag = _tag()
    orgs = [Organization.objects.using(LIVE).create(name=f"{name}-{tag}") for name in "ABC"]
    collabs = []
    for members in (orgs[:2], orgs[2:]):
        collab = Collaboration(name=f"collab-{_tag()}", encrypted=False)
        collab.save(using=LIVE)
        collab.organizations.add(*members)
        collabs.append(collab)
    nodes = []
    for org, collab in zip(orgs, (collabs[0], collabs[0], collabs[1]), strict=True):
        node = Node(name=f"node-{org.name}", organization=org, collaboration=collab, status="offline")
        node.set_api_key(str(uuid.uuid4()))
        node.save(using=LIVE)
        nodes.append(node)
    return LiveWorld(*orgs, *collabs, *nodes)


def make_user(org: Organization, *, event_scope: str | None = None, roles: tuple[str, ...] = ()) -> User:
    user = User(username=f"user-{_tag()}", email=f"{_tag()}@example.org", organization=org)
    user.set_password(PASSWORD)
    user.save(using=LIVE)
    if event_scope:
        user.rules.add(*Rule.objects.using(LIVE).filter(name="event", scope=event_scope, operation="RECEIVE"))
    if roles:
        user.roles.add(*Role.objects.using(LIVE).filter(name__in=roles, is_default_role=True))
    return user


def user_socket(sockets, url: str, org: Organization, scope: str = "COLLABORATION") -> NodeSocket:
    """A socket of a new user of ``org`` who receives events at ``scope``, once it joined its rooms."""
    socket = sockets(url, token(make_user(org, event_scope=scope)))
    socket.wait_joined()
    return socket


def token_pair(identity: User | Node) -> tuple[str, str]:
    """Tokens of a login of ``identity``, on the database it was loaded from (the live one, mostly)."""
    kind = "user" if isinstance(identity, User) else "node"
    session = LoginSession.objects.using(identity._state.db).create(
        id=uuid.uuid4().hex, identity_id=identity.pk, refresh_jti=uuid.uuid4().hex
    )
    return login_tokens(
        identity.pk,
        kind,
        [],
        generation=identity.token_generation,
        session_id=session.id,
        refresh_jti=session.refresh_jti,
        ends=None,
    )


def token(identity: User | Node) -> str:
    return token_pair(identity)[0]


def log_in(host: str, identity: User | Node) -> str:
    """The access token of a real login (one that can be ended) over REST."""
    if isinstance(identity, User):
        path, body = "token/user", {"username": identity.username, "password": PASSWORD}
    else:
        api_key = str(uuid.uuid4())
        identity.set_api_key(api_key)
        identity.save(using=LIVE, update_fields=["api_key_hash"])
        path, body = "token/node", {"api_key": api_key}
    response = requests.post(f"{host}/api/{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def short_lived_token(identity: User | Node, seconds: float) -> str:
    """A token of ``identity`` that expires in ``seconds``."""
    claims = jwt.decode(
        token(identity), settings.JWT_SECRET_KEY, algorithms=["HS256"], options={"verify_sub": False}
    )
    claims["exp"] = int(time.time() + seconds)
    return jwt.encode(claims, settings.JWT_SECRET_KEY, algorithm="HS256")


def expired_token(identity: Node) -> str:
    access = AccessToken(identity.pk, "node")
    access.set_exp(lifetime=-timedelta(minutes=1))
    return str(access)


def foreign_token(identity: Node) -> str:
    """A well-formed token signed with another secret (the server restarted with a new key)."""
    claims = jwt.decode(
        token(identity), settings.JWT_SECRET_KEY, algorithms=["HS256"], options={"verify_sub": False}
    )
    return jwt.encode(claims, "another-secret-of-more-than-thirty-two-bytes", algorithm="HS256")


def create_task(
    host: str, user: User, collaboration: Collaboration, organizations: list[Organization] | None = None
) -> int:
    """POST /api/task for ``organizations`` (every one of ``collaboration``); the task id."""
    plain = base64.b64encode(json.dumps({"method": "m"}).encode()).decode()
    organizations = collaboration.organizations.all() if organizations is None else organizations
    body = {
        "name": "t",
        "image": "some/image",
        "collaboration_id": collaboration.pk,
        "organizations": [{"id": org.pk, "input": plain} for org in organizations],
        "databases": [{"label": "default"}],
    }
    response = requests.post(
        f"{host}/api/task", json=body, headers={"Authorization": f"Bearer {token(user)}"}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def eventually(check, timeout: float = 10, interval: float = 0.1):
    """The first truthy result of ``check()`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def in_memory(scenario):
    """Await ``scenario()`` on the in-memory channel layer (whatever the configured one: a RabbitMQ
    layer's reader cannot be cancelled when the loop of a synchronous call closes)."""

    async def run():
        return await scenario()

    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        channel_layers.backends.clear()
        try:
            return async_to_sync(run)()
        finally:
            channel_layers.backends.clear()


def recorded(layer: object, method: str) -> list[tuple]:
    """The arguments of every later call of ``layer``'s async ``method``, which still does its work."""
    calls: list[tuple] = []
    original = getattr(layer, method)

    async def recording(*args) -> None:
        calls.append(args)
        await original(*args)

    setattr(layer, method, recording)
    return calls


class Sink:
    """A socket's transport that keeps what the server sends it."""

    def __init__(self) -> None:
        self.packets: list[str] = []

    async def send_packets(self, packets: list[str]) -> None:
        self.packets += packets

    async def close(self) -> None:
        pass


def hears(ws: websocket.WebSocket, wanted: Callable[[str], bool], seconds: float) -> bool:
    """Whether a frame matching ``wanted`` comes to a raw websocket within ``seconds`` (PINGs answered)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        ws.settimeout(remaining)
        try:
            frame = ws.recv()
        except websocket.WebSocketTimeoutException:
            return False
        if frame == "2":
            ws.send("3")
        elif wanted(frame):
            return True
    return False


class Link:
    """A TCP relay to ``upstream`` on a port of its own; ``cut`` closes its connections and closes new
    ones at once until ``mend``."""

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
                    # Closed once the client's first bytes (AMQP's protocol header) are read: it reads an
                    # end of file, as from a broker that stops, not a reset.
                    with suppress(OSError):
                        client.settimeout(1)
                        client.recv(8)
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


def listening(url: str) -> None:
    """The server process at ``url`` has its socket server started (its first Socket.IO request starts
    it): it beats, and listens for the other processes' rechecks and forwards."""
    requests.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=30)


@contextmanager
def row_held(pk: int, **connect: object) -> Iterator[None]:
    """Another connection (``psycopg2.connect(**connect)``) holds the row of identity ``pk`` in a
    transaction it does not end meanwhile (a stopped or dying process, mid-transaction)."""
    holder = psycopg2.connect(**connect)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM authenticatable WHERE id = %s FOR UPDATE", [pk])
        yield
    finally:
        holder.rollback()
        holder.close()
