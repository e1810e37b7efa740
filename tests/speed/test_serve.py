"""``python -m vantage6.serve`` (``make run``): one daphne, or several on one address."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.free_port import free_port
from vantage6.serve import listen

ROOT = Path(__file__).resolve().parents[2]
# Never contacted by these requests; several workers just need a broker to be configured.
UNUSED_BROKER = "amqp://guest:guest@127.0.0.1:1"


def launch(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("V6_")}
    variables.update(V6_DATA_DIR=str(tmp_path), V6_HOST="127.0.0.1", V6_PORT=str(port), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "vantage6.serve"],
        cwd=ROOT,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def get(port: int, path: str = "/api/version") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_up(process: subprocess.Popen, port: int) -> None:
    for _ in range(300):
        assert process.poll() is None, process.stderr.read()
        try:
            assert get(port) == (200, b'{"version":"4.15.2"}')
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer")


def children(process: subprocess.Popen) -> list[int]:
    path = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    return [int(pid) for pid in path.read_text().split()]


def sockets_of(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


@pytest.fixture
def serving(tmp_path):
    """Starts the server with the given ``V6_`` variables on a free port: (process, port) once it answers.
    A process still running at the end of the test is killed."""
    started = []

    def start(**env: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        process = launch(tmp_path, port, **env)
        started.append(process)
        wait_up(process, port)
        return process, port

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the launcher and its children
            process.wait()


def test_sockets_share_one_address():
    sockets = listen("127.0.0.1", 0, 3)
    try:
        assert len({sock.getsockname() for sock in sockets}) == 1
        assert all(sock.get_inheritable() for sock in sockets)
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_several_workers_do_not_join_a_server_already_on_the_address():
    # Another instance of the server, left running: its sockets share the address too.
    running = socket.create_server(("127.0.0.1", 0), reuse_port=True)
    try:
        with pytest.raises(SystemExit, match="is in use"):
            listen("127.0.0.1", running.getsockname()[1], 2)
    finally:
        running.close()


def test_several_workers_bind_beside_closed_connections():
    server = socket.create_server(("127.0.0.1", 0), reuse_port=True)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side waits in TIME_WAIT
    client.close()
    server.close()
    for sock in listen("127.0.0.1", port, 2):
        sock.close()


def test_several_workers_need_rabbitmq(tmp_path):
    process = launch(tmp_path, free_port(), V6_WORKERS="2")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.strip() == (
        "Configuration error: V6_WORKERS above 1 needs V6_RABBITMQ_URI "
        "(processes share events through RabbitMQ)"
    )


def test_one_worker_serves_in_the_process_itself(serving):
    process, _port = serving()
    assert children(process) == []
    assert sockets_of(process.pid) > 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_workers_share_the_connections_and_stop_together(serving):
    process, port = serving(V6_WORKERS="2", V6_RABBITMQ_URI=UNUSED_BROKER)
    workers = children(process)
    assert len(workers) == 2
    before = {pid: sockets_of(pid) for pid in workers}
    held = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(24)]
    for connection in held:
        connection.request("GET", "/api/version")
        assert connection.getresponse().read() == b'{"version":"4.15.2"}'
    assert all(sockets_of(pid) > before[pid] for pid in workers), "one worker got every connection"
    for connection in held:
        connection.close()

    os.kill(workers[0], signal.SIGKILL)  # one worker dies: all stop, for the supervisor to restart
    assert process.wait(30) != 0
    assert not Path(f"/proc/{workers[1]}").exists()  # stopped and reaped before the launcher exits


def test_sigterm_stops_every_worker(serving):
    process, port = serving(V6_WORKERS="2", V6_RABBITMQ_URI=UNUSED_BROKER)
    workers = children(process)
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(OSError):
        get(port)
