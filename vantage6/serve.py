"""Serve the ASGI application with daphne on ``V6_HOST:V6_PORT`` in ``V6_WORKERS`` processes.

    python -m vantage6.serve

One process: daphne runs in this one. Several: the sockets are bound here, one per daphne process
(``--fd``) on the same address, and the kernel spreads the connections over them (a Python process
uses one core). Ending this process (SIGTERM, SIGINT) ends them all; when one of them
exits, the others are stopped and this process exits with its status, for the supervisor to restart.
Each two of them are linked by a Unix socket pair made here, over which they pass each other their
room events (``vantage6.socketio.siblings``); RabbitMQ carries the rest, and the events of other machines.

daphne runs the event loop; the connections are served by protocols of our own in place of Twisted's
and autobahn's: ``vantage6.http`` parses HTTP and calls the ASGI application, and hands the
connections upgraded to websockets (``/socket.io/`` only) to ``vantage6.websocket``, which calls the
Socket.IO websocket consumer directly (``vantage6.asgi``'s websocket route is what plain daphne serves).

Every daphne process stops gracefully on SIGTERM or SIGINT: it stops accepting connections, closes
its Socket.IO connections at once (websockets, and long-polling requests that only wait for packets)
so that clients reconnect to another process without waiting for a timeout (their nodes are not
announced offline meanwhile), lets the requests in progress finish (at most ``STOP_SECONDS``), and
exits with status 0. Its responses from then on say ``Connection: close``, and the connections kept
alive after an answer with no request begun on them since are closed at once (a client finds its
pooled connection closed and opens a new one). Those of a trusted proxy (``V6_TRUSTED_PROXIES``) are
left for the proxy to close (for at most ``IDLE_SECONDS``: the proxy's upstream ``keepalive_timeout``
must be shorter, as in scripts/proxy): the proxy sends request after request on them, and closing one
itself could cross a request it is sending, which is then lost (a 502 for a POST). A connection that has
brought no request yet (one accepted from the backlog as the process stops) gets as long for its first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from vantage6.socketio.server import Server as SocketServer

APPLICATION = "vantage6.asgi:application"
STOP_SECONDS = 20
IDLE_SECONDS = 5
BACKLOG = 1024
# Files a server process holds besides its connections: database and broker connections, logs, modules.
OTHER_FILES = 256
# The handshake headers the websocket application reads (the token, in nodes.consumers.handshake_auth;
# the client address a trusted proxy names, to which a session is bound): the only ones its scope carries.
SCOPE_HEADERS = (b"authorization", b"x-forwarded-for")

logger = logging.getLogger("vantage6.serve")


def daphne(*binding: str) -> list[str]:
    """The command of one daphne process of this server, bound as ``binding`` says."""
    return [sys.executable, "-m", "vantage6.serve", *binding]


def sibling_links(count: int) -> list[list[socket.socket]]:
    """For each of ``count`` processes, its ends of a socket pair with each other one."""
    ends: list[list[socket.socket]] = [[] for _ in range(count)]
    for first in range(count):
        for second in range(first + 1, count):
            one, other = socket.socketpair()
            ends[first].append(one)
            ends[second].append(other)
    return ends


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address (SO_REUSEPORT): the kernel spreads new connections
    over them evenly, where processes accepting on one shared socket would race for every wake-up."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    if family != socket.AF_INET:
        raise SystemExit(f"Configuration error: several workers need an IPv4 V6_HOST, got {host!r}")
    if port:
        refuse_taken(host, port)
    sockets = [socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=True)]
    port = sockets[0].getsockname()[1]  # the one the system chose for port 0
    sockets += [
        socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=True)
        for _ in range(count - 1)
    ]
    for sock in sockets:
        sock.set_inheritable(True)
    return sockets


def refuse_taken(host: str, port: int) -> None:
    """Stop if a server already listens on the address: SO_REUSEPORT would let this one's sockets join
    that server's (another instance left running, of the same user), and the kernel would give each a
    share of the connections. A socket without it cannot bind while any other listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections do not count
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"Configuration error: {host}:{port} is in use ({exc.strerror})") from None


def endpoint(host: str, port: int) -> str:
    """The listening endpoint of a single daphne process: its ``-b``/``-p`` with the ``BACKLOG`` of
    ``listen`` (Twisted's default of 50 drops the connections of a burst beyond it; their clients retry
    a second later)."""
    interface = host.strip("[]").replace(":", r"\:")
    return f"tcp:port={port}:interface={interface}:backlog={BACKLOG}"


def allow_open_files(connections: int) -> None:
    """Raise this process's limit of open files (as far as its hard limit allows) to hold
    ``connections`` and ``OTHER_FILES``: the connection cap must come before the limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + OTHER_FILES
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < wanted:
        logger.warning(
            "The limit of open files (%d) is below V6_MAX_CONNECTIONS + %d: lower V6_MAX_CONNECTIONS "
            "or raise the limit (ulimit -n)",
            raised,
            OTHER_FILES,
        )


def run_daphne(binding: list[str], family: str = "", links: tuple[socket.socket, ...] = ()) -> None:
    """Serve in this process until SIGTERM or SIGINT, then stop gracefully; with the ``links`` to its
    siblings, of ``family``."""
    # daphne.server installs Twisted's asyncio reactor: imported here, before anything imports Twisted.
    from daphne.cli import CommandLineInterface
    from daphne.server import Server
    from twisted.internet import reactor as twisted_reactor
    from twisted.internet.defer import Deferred

    from vantage6 import http, websocket

    reactor: Any = twisted_reactor  # the asyncio reactor: its interfaces are not typed as one

    def _sockets() -> SocketServer:
        from vantage6.asgi import server  # the application daphne serves, loaded already

        return server

    def _relayed(target: bytes) -> bool:
        """A long-polling GET forwarded to the owner of its session, which lives on: the owner answers it
        at the stop (``SocketServer.stop``), and a drop would lose the packets of that answer."""
        query = parse_qs(target.partition(b"?")[2].decode("latin-1"))
        return _sockets().relays(query.get("sid", [""])[0])

    class GracefulServer(Server):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **{**kwargs, "signal_handlers": False})
            self.ports: list = []
            self.stop_by = 0.0
            self.idle_by = 0.0

        def run(self) -> None:
            reactor.callWhenRunning(self._on_signals)
            if links:
                reactor.callWhenRunning(self._link_siblings)
            super().run()

        def _link_siblings(self) -> None:
            from vantage6.asgi import server as sockets  # the application daphne serves, loaded already
            from vantage6.socketio.siblings import Siblings

            loop = reactor._asyncioEventloop
            # Held here: the loop keeps only a weak reference to a task.
            self.linking = loop.create_task(sockets.link_siblings(Siblings(family, list(links))))
            # Listening from the start, not from its first socket: the room events of its REST requests go
            # to the siblings over their links, and to the broker only once another process is known
            # (a process without sockets published each one to the broker and was woken by its confirm).
            self.listening = loop.create_task(sockets.listening())

        def _on_signals(self) -> None:
            loop = reactor._asyncioEventloop
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, self.drain)

        def listen_success(self, port: object) -> None:
            self.ports.append(port)
            from django.conf import settings

            from vantage6.api.observability import register_gauges
            from vantage6.asgi import SOCKET_PATH as SOCKETS  # the application daphne serves, loaded
            from vantage6.asgi import server as sockets
            from vantage6.socketio.consumers import WebsocketConsumer

            def handler_for(path: str) -> WebsocketConsumer | None:
                return WebsocketConsumer(server=sockets) if SOCKETS.match(path) else None

            # daphne hands each upgraded connection to this factory's protocol (autobahn's otherwise),
            # which calls the websocket consumer of the Socket.IO server without going through ASGI.
            self.ws_factory = websocket.Factory(
                handler_for, max_message=sockets.max_payload, scope_headers=SCOPE_HEADERS
            )
            # The connections are served by the server's own HTTP protocol (daphne's is Twisted's).
            self.http = http.Factory(
                self.application,
                self.ws_factory,
                settings.MAX_CONNECTIONS,
                max_per_client=settings.MAX_CONNECTIONS_PER_CLIENT,
                trusted_proxies=settings.TRUSTED_PROXIES,
            )
            register_gauges(self.http.gauges)
            allow_open_files(settings.MAX_CONNECTIONS)
            self.http_factory.buildProtocol = self.http.buildProtocol  # before the reactor accepts any
            super().listen_success(port)

        def drain(self) -> None:
            if self.stop_by:
                return
            self.stop_by = time.monotonic() + STOP_SECONDS
            self.idle_by = time.monotonic() + IDLE_SECONDS
            for port in self.ports:
                # Closing the socket resets the connections the kernel completed but nobody accepted yet
                # (a request already sent on one is lost: a 502 for a POST): accept them all first.
                port.numberAccepts = BACKLOG
                port.doRead()
                port.stopListening()
            self.http.draining = True  # each answer from now on closes its connection
            _sockets().stop()  # its long-polling clients start over with another process
            logger.info(
                "Stopping: %d socket and %d idle connections closed, finishing the requests",
                self._drop_sockets(),
                self.http.close_idle(),
            )
            self._stop_when_done()

        def _drop_sockets(self) -> int:
            """Drop the websockets and long-polling requests (also those that came since, on kept-alive
            connections); how many."""
            # A dropped connection, not an Engine.IO CLOSE: clients reconnect to another process.
            polls = self.http.drop_long_polls(spare=_relayed)
            return polls + len([s for s in list(self.ws_factory.sockets) if s.drop()])

        def _busy(self) -> int:
            """Requests still arriving or being answered, and applications still ending."""
            return len(self.ws_factory.sockets) + self.http.busy()

        def _stop_when_done(self) -> None:
            self._drop_sockets()
            self.http.close_idle()  # also those kept alive by an answer begun before the stop
            busy = self._busy()
            if time.monotonic() < self.idle_by:
                busy += len(self.http.connections)
            if busy and time.monotonic() < self.stop_by:
                reactor.callLater(0.05, self._stop_when_done)
                return
            if busy:
                logger.warning("Stopping: %d requests did not finish within %d s", busy, STOP_SECONDS)
            # Its sockets dropped and its requests answered: the others wait for it no longer.
            departed = Deferred.fromFuture(asyncio.ensure_future(_sockets().depart()))
            departed.addBoth(lambda _: reactor.stop())

    class GracefulCommandLine(CommandLineInterface):
        server_class = GracefulServer

    # -v 0: no access log of daphne's own, the server logs each request itself.
    GracefulCommandLine().run(["-v", "0", *binding, APPLICATION])
    # Every request is answered and the port is closed: the heap is the system's to free. Collecting all
    # of it at the interpreter's exit held the exit for 1-2 s on a loaded machine (0.2 s frozen).
    gc.freeze()


def serve(host: str, port: int, workers: int) -> int:
    if workers == 1:
        run_daphne(["-e", endpoint(host, port)])
        return 0
    sockets = listen(host, port, workers)
    family = secrets.token_hex(8)
    links = sibling_links(workers)
    children = []
    for sock, ends in zip(sockets, links, strict=True):
        fds = [sock.fileno(), *(end.fileno() for end in ends)]
        siblings = f"{family}:{','.join(str(fd) for fd in fds[1:])}"
        children.append(subprocess.Popen(daphne("--fd", str(fds[0]), "--siblings", siblings), pass_fds=fds))
    for sock in [*sockets, *(end for ends in links for end in ends)]:
        sock.close()  # each child holds its own

    def stop(*_args: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid, status = os.wait()
    stop()
    for child in children:
        try:
            child.wait(STOP_SECONDS + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    first = next(child for child in children if child.pid == pid)
    first.returncode = os.waitstatus_to_exitcode(status)
    return first.returncode


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
    if sys.argv[1:2] == ["--fd"]:  # one process of several, started by serve()
        family, _, fds = sys.argv[4].partition(":")
        links = tuple(socket.socket(fileno=int(fd)) for fd in fds.split(","))
        run_daphne(sys.argv[1:3], family, links)
        return
    from django.conf import settings

    from vantage6.env import load_settings_or_exit

    load_settings_or_exit()
    sys.exit(serve(settings.HOST, settings.PORT, settings.WORKERS))


if __name__ == "__main__":
    main()
