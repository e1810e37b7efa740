"""Real servers for the real-time tests: daphne processes on a committed database of their own.

The database is a temporary SQLite file, or a temporary PostgreSQL database on the server of
``V6_DATABASE_URL`` when several instances must share it. The test process reaches it through the
extra connection alias ``LIVE`` (queries must say ``.using(LIVE)``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import websocket
from django.conf import settings
from django.db import connections

from scripts.free_port import free_port

LIVE = "live"
ROOT = Path(settings.BASE_DIR)

# Short timers so that ping, timeout and sweep behaviour shows within seconds.
FAST_TIMERS = {
    "V6_SOCKET_PING_INTERVAL": "2",
    "V6_SOCKET_PING_TIMEOUT": "2",
    "V6_NODE_HEARTBEAT_TIMEOUT": "3",
}
# Pings far apart, for a test that reads a socket only when it waits for a frame: no ping times out meanwhile.
LONG_PINGS = {"V6_SOCKET_PING_INTERVAL": "25", "V6_SOCKET_PING_TIMEOUT": "60"}


def sql_apart(query: str, *args: object, **connect: object) -> list[tuple]:
    """``query`` on a PostgreSQL connection of its own, in autocommit (``connect``: psycopg2.connect's
    arguments, e.g. ``dsn=``); its rows, if any."""
    conn = psycopg2.connect(**connect)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(query, args)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def open_tasks_socket(port: int, bearer: str) -> websocket.WebSocket:
    """A websocket of ``bearer`` to the server on ``port`` that asked to connect to ``/tasks`` (not yet
    answered)."""
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=30, header=[f"Authorization: Bearer {bearer}"])
    assert ws.recv().startswith("0{")  # the Engine.IO OPEN
    ws.send("40/tasks,{}")
    return ws


class LiveDatabase:
    """A migrated database for live servers, registered in the test process as ``LIVE``."""

    def __init__(self, folder: Path, *, postgres_url: str | None = None) -> None:
        self.folder = folder
        self.postgres_url = postgres_url
        if postgres_url:
            self.name = f"v6_live_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{self.name}"')
            self.url = urlsplit(postgres_url)._replace(path=f"/{self.name}").geturl()
        else:
            self.url = f"sqlite:///{folder / 'live.sqlite3'}"
        self.env = {
            "V6_DATA_DIR": str(folder),
            "V6_DATABASE_URL": self.url,
            "V6_SECRET_KEY": settings.SECRET_KEY,
            "V6_JWT_SECRET_KEY": settings.JWT_SECRET_KEY,
            "V6_LOG_LEVEL": "warning",
            **FAST_TIMERS,
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.process_env(), check=True
        )
        if postgres_url:
            database = {**_connection_fields(settings.DATABASES["default"]), "NAME": self.name}
        else:
            database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(folder / "live.sqlite3")}
        # A live database of a test module stands in for the session's (``live_db``) until it is dropped.
        self._outer = connections.settings.get(LIVE)
        if self._outer is not None:
            _forget_connection()
        configured = connections.configure_settings(
            {"default": settings.DATABASES["default"], LIVE: database}
        )
        connections.settings[LIVE] = configured[LIVE]

    def process_env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("V6_")}
        return {**base, **self.env, **extra}

    def _admin(self, sql: str) -> None:
        sql_apart(sql, dsn=self.postgres_url)

    def drop(self) -> None:
        _forget_connection()
        if self._outer is None:
            del connections.settings[LIVE]
        else:
            connections.settings[LIVE] = self._outer
        if self.postgres_url:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _forget_connection() -> None:
    """Close this thread's connection to the live database, so that its next use connects anew."""
    connections[LIVE].close()
    del connections[LIVE]


def _connection_fields(database: dict) -> dict:
    return {key: database[key] for key in ("ENGINE", "USER", "PASSWORD", "HOST", "PORT")}


class Daphne:
    """A server (``python -m vantage6.serve``: daphne, in ``workers`` processes) serving the project on a
    free loopback port."""

    def __init__(
        self, env: dict[str, str], folder: Path, command: list[str] | None = None, workers: int = 1
    ) -> None:
        self.env = env
        self.workers = workers
        self.command = command or [sys.executable, "-m", "vantage6.serve"]
        self.port = free_port()
        self.log = folder / f"daphne-{self.port}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env={
                    **self.env,
                    "V6_HOST": "127.0.0.1",
                    "V6_PORT": str(self.port),
                    "V6_WORKERS": str(self.workers),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its worker processes with it: ``stop`` can end them all
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("daphne did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                # The workers too: killed alone, the parent left them to end their graceful stop (up to
                # STOP_SECONDS), beating meanwhile in the live database the next test counts processes in.
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def show_log(self) -> None:
        """Print the server's output (pytest shows it for failed tests) and start a fresh log."""
        if self.log.exists():
            print(self.log.read_text()[-20000:])
            self.log.write_text("")

    def restart(self) -> None:
        self.stop()
        self.start()

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


# A server whose steps can be held for an exact interleaving of processes (``tests.realtime.hooked_server``).
HOOKED = [sys.executable, "-c", "import tests.realtime.hooked_server as hooks; hooks.main()"]


@contextmanager
def hooked_servers(
    live_db: LiveDatabase, folder: Path, commands: list[list[str] | None], **env: str
) -> Iterator[tuple[Path, list[Daphne]]]:
    """The hooks' folder and a server per command (``HOOKED``, or None for a plain one) on the live
    database, with ``env``; stopped when done."""
    hooks = folder / f"hooks-{uuid.uuid4().hex[:8]}"
    hooks.mkdir()
    process_env = live_db.process_env(HOOKS_DIR=str(hooks), **env)
    servers: list[Daphne] = []
    try:
        for command in commands:
            servers.append(Daphne(process_env, folder, command))
        yield hooks, servers
    finally:
        for server in reversed(servers):
            server.stop()
