"""Raw HTTP/1.1 over plain sockets, for the protocol tests: every byte on the wire is the test's."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from tests.realtime.live import Daphne

VERSION = b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n\r\n"
# Log lines that mean an exception escaped to the log.
ESCAPED = ("Traceback", "Unhandled Error", "Exception inside application")
MIB = 1024  # RSS is in KiB


def connect(port: int, timeout: float = 20) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


class Reader:
    """Reads responses off one socket: head fields (lower-case names) and body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def _more(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.data += chunk
        return bool(chunk)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.data:
            if not self._more():
                raise EOFError(self.data)
        part, _, self.data = self.data.partition(marker)
        return part

    def _exactly(self, size: int) -> bytes:
        while len(self.data) < size:
            if not self._more():
                raise EOFError(self.data)
        part, self.data = self.data[:size], self.data[size:]
        return part

    def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line, *lines = self._until(b"\r\n\r\n").split(b"\r\n")
        fields = {}
        for line in lines:
            name, _, value = line.decode().partition(":")
            fields[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if head_only or status in (100, 101, 204, 304):
            return status, fields, b""
        if fields.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n"), 16):
                body += self._exactly(size)
                self._exactly(2)
            self._exactly(2)
            return status, fields, body
        if "content-length" in fields:
            return status, fields, self._exactly(int(fields["content-length"]))
        while self._more():
            pass
        body, self.data = self.data, b""
        return status, fields, body

    def closed(self) -> bool:
        """Whether the server closed the connection (nothing more comes)."""
        try:
            return not self._more() and not self.data
        except ConnectionResetError:
            return True

    def all(self) -> tuple[list[int], bool]:
        """The statuses of every response until the server closes the connection or stays silent for
        the socket's timeout; whether it closed."""
        statuses = []
        while True:
            try:
                if not self.data and not self._more():
                    return statuses, True
                statuses.append(self.response()[0])
            except (EOFError, ConnectionResetError):
                return statuses, True
            except TimeoutError:
                return statuses, False


def still_serving(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(VERSION)
        status, _, body = Reader(sock).response()
    assert status == 200 and "version" in json.loads(body)


def escaped(log: Path, since: int = 0) -> list[str]:
    """The lines of a server log (from byte ``since`` on) that show the first exception escaping."""
    with log.open("rb") as file:
        file.seek(since)
        text = file.read().decode(errors="replace")
    lines = text.splitlines()
    first = next((n for n, line in enumerate(lines) if any(marker in line for marker in ESCAPED)), None)
    return [] if first is None else lines[first : first + 40]  # the first one, to show


def log_size(log: Path) -> int:
    return log.stat().st_size


def open_files(pid: int) -> list[str]:
    """What the descriptors of a process are open on (``socket:[…]``, paths)."""
    return [link for fd in Path(f"/proc/{pid}/fd").iterdir() if (link := _link(fd))]


def served_sockets(daphne: Daphne) -> int:
    """The sockets a server process holds open on its port (listening or connected; not those of its
    database connections)."""
    port = daphne.port
    held = {
        link[len("socket:[") : -1] for link in open_files(daphne.process.pid) if link.startswith("socket:[")
    }
    on_port = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rpartition(":")[2], 16) == port:
                on_port.add(fields[9])  # the socket's inode
    return len(held & on_port)


def unconnected(daphne: Daphne) -> bool:
    """Whether the server (of one process) has closed every connection: it holds its listening socket
    alone. Counting a server's sockets, a test waits for this first: a connection an earlier step closed
    may still be open on the server's side, and closing there later it would hide one the test left."""
    return served_sockets(daphne) == 1


def _link(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:
        return ""  # closed meanwhile


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) the process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(check, timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def small_window(port: int) -> socket.socket:
    """A connection whose receive buffer is small: what the client does not read stays in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread (the server may stop reading it for a while)."""

    def send() -> None:
        with contextlib.suppress(OSError):  # the server may close the connection
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread
