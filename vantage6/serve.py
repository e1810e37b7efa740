"""Serve the ASGI application with daphne on ``V6_HOST:V6_PORT`` in ``V6_WORKERS`` processes.

    python -m vantage6.serve

One process: daphne replaces this one. Several: the sockets are bound here, one per daphne process
(``--fd``) on the same address, and the kernel spreads the connections over them (a Python process
uses one core). Ending this process (SIGTERM, SIGINT) ends them all; when one of them
exits, the others are stopped and this process exits with its status, for the supervisor to restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

APPLICATION = "vantage6.asgi:application"
STOP_SECONDS = 20


def daphne(*binding: str) -> list[str]:
    # -v 0: no access log of daphne's own, the server logs each request itself.
    return [sys.executable, "-m", "daphne", "-v", "0", *binding, APPLICATION]


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address (SO_REUSEPORT): the kernel spreads new connections
    over them evenly, where processes accepting on one shared socket would race for every wake-up."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    if family != socket.AF_INET:
        raise SystemExit(f"Configuration error: several workers need an IPv4 V6_HOST, got {host!r}")
    sockets = [socket.create_server((host, port), family=family, backlog=1024, reuse_port=True)]
    port = sockets[0].getsockname()[1]  # the one the system chose for port 0
    sockets += [
        socket.create_server((host, port), family=family, backlog=1024, reuse_port=True)
        for _ in range(count - 1)
    ]
    for sock in sockets:
        sock.set_inheritable(True)
    return sockets


def serve(host: str, port: int, workers: int) -> int:
    if workers == 1:
        os.execv(sys.executable, daphne("-b", host, "-p", str(port)))
    sockets = listen(host, port, workers)
    children = [
        subprocess.Popen(daphne("--fd", str(sock.fileno())), pass_fds=(sock.fileno(),)) for sock in sockets
    ]
    for sock in sockets:
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
            child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    first = next(child for child in children if child.pid == pid)
    first.returncode = os.waitstatus_to_exitcode(status)
    return first.returncode


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
    from django.conf import settings

    from vantage6.env import load_settings_or_exit

    load_settings_or_exit()
    sys.exit(serve(settings.HOST, settings.PORT, settings.WORKERS))


if __name__ == "__main__":
    main()
