"""PostgreSQL and RabbitMQ of the deployment tests' own, to stop and start for real without touching the
run's.

Each service is started by ``scripts/services-start.sh`` in a folder of its own (so that stopping one
leaves the other running), on a free port that it keeps when it is started again. They are started once
for the run (``private_postgres`` and ``private_rabbitmq`` in tests/conftest.py; a start costs seconds)
and shared by the deployments, one after another: each deployment starts on a new empty database, and
a test that stopped a service has it started again after it. Needs root and the Debian packages, as the
scripts do.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import pytest

from tests.realtime.live import ROOT, free_port, sql_apart

SCRIPTS = ROOT / "scripts"
_EXPORT = re.compile(r"^export (V6_[A-Z_]+)=(\S+)$")


def available() -> str | None:
    """Why private services cannot be started here, or None."""
    if os.geteuid() != 0:
        return "needs root (the services run as their own users)"
    if not shutil.which("rabbitmq-server") or not shutil.which("runuser"):
        return "needs the Debian packages postgresql and rabbitmq-server"
    return None


# The tests that start a deployment of their own (private services, scripts/cluster.sh) run one after
# another on one worker (--dist loadgroup): two deployments starting side by side would race for the
# ports services-start.sh prefers (epmd's 4369) and cluster.sh's nginx install, and share two cores
# between tests whose outages and answers are timed.
ONE_DEPLOYMENT_AT_A_TIME = pytest.mark.xdist_group("deployments")


def marks() -> list[pytest.MarkDecorator]:
    """Marks of a module of live tests on private services: skipped where they cannot be started,
    failed instead under ``V6_REQUIRE_SERVICES`` (CI). ``own_services``: they run alike whatever the
    run's database and channel layer, so CI's run on the defaults leaves them out."""
    missing = available()
    if missing and os.environ.get("V6_REQUIRE_SERVICES"):
        pytest.fail(f"private services cannot be started: {missing}", pytrace=False)
    return [
        pytest.mark.live,
        pytest.mark.own_services,
        ONE_DEPLOYMENT_AT_A_TIME,
        pytest.mark.skipif(bool(missing), reason=str(missing)),
    ]


class PrivateService:
    """``postgres`` or ``rabbitmq`` on a free loopback port; ``url`` is its V6_ variable's value."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder / name
        self.folder.mkdir(parents=True)
        folder.chmod(0o755)  # the service's own user must reach its data
        self.port = free_port()
        self.url = ""

    def _env(self) -> dict[str, str]:
        port_variable = "V6_PG_PORT" if self.name == "postgres" else "V6_RABBITMQ_PORT"
        return {**os.environ, "V6_SERVICES_DIR": str(self.folder), port_variable: str(self.port)}

    def start(self) -> None:
        started = subprocess.run(
            [SCRIPTS / "services-start.sh", self.name],
            env=self._env(),
            capture_output=True,
            text=True,
            # Longer than the script waits for RabbitMQ (120 s), so that its own report of a failure arrives.
            timeout=180,
        )
        out, err = started.stdout, started.stderr
        if (err and "failed" in err) or not out:
            raise RuntimeError(f"{self.name} did not start: {err}")
        state = (self.folder / "state.env").read_text()
        if f"DATA={self.folder}\n" not in state:  # the script keeps data elsewhere if it cannot reach ours
            raise RuntimeError(f"{self.name} keeps its data outside {self.folder}: {state}")
        exports = dict(match.groups() for line in out.splitlines() if (match := _EXPORT.match(line)))
        url = exports["V6_DATABASE_URL" if self.name == "postgres" else "V6_RABBITMQ_URI"]
        if f":{self.port}" not in url:
            raise RuntimeError(f"{self.name} came back on another port: {url}")
        self.url = url

    def kill(self) -> None:
        """Stop at once, as a crash does: PostgreSQL's immediate shutdown, the broker killed."""
        if self.name == "postgres":
            pid_file, stop_signal = self.folder / "pgdata" / "postmaster.pid", signal.SIGQUIT
        else:
            pid_file, stop_signal = self.folder / "rabbitmq" / "rabbit.pid", signal.SIGKILL
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):  # gone already (killed before)
            os.kill(pid, stop_signal)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop what is left (RabbitMQ's epmd after a kill); the data goes with the test's folder."""
        subprocess.run([SCRIPTS / "services-stop.sh"], env=self._env(), check=True, capture_output=True)

    def close(self) -> None:
        self.kill()
        self.stop()

    def alive(self) -> bool:
        """Running: its process neither gone nor a zombie."""
        pid_file = self.folder / (
            "pgdata/postmaster.pid" if self.name == "postgres" else "rabbitmq/rabbit.pid"
        )
        try:
            status = Path(f"/proc/{int(pid_file.read_text().split()[0])}/status").read_text()
        except (OSError, IndexError, ValueError):  # no pid file (stopped), or no such process
            return False
        return "\nState:\tZ" not in status

    def new_database(self) -> None:
        """The database of ``url`` dropped and created empty, for the next deployment on this server."""
        name = urlsplit(self.url).path[1:]
        admin = (
            urlsplit(self.url)._replace(netloc=f"postgres@127.0.0.1:{self.port}", path="/postgres").geturl()
        )
        sql_apart(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dsn=admin)
        sql_apart(f'CREATE DATABASE "{name}" OWNER vantage6', dsn=admin)


# The services of the run's deployments (``shared``), while they are started.
_shared: list[PrivateService] = []


@contextlib.contextmanager
def shared(name: str) -> Iterator[PrivateService]:
    """The service ``name`` started in a new folder, and stopped after (its data goes with the folder)."""
    if reason := available():
        pytest.skip(reason)
    # Under /tmp, not pytest's private folder: the services' own users must reach their data.
    with tempfile.TemporaryDirectory(prefix=f"v6-{name}-") as folder:
        service = PrivateService(name, Path(folder))
        try:
            service.start()
            _shared.append(service)
            yield service
        finally:
            if service in _shared:
                _shared.remove(service)
            service.close()


def start_stopped() -> None:
    """Start again the shared services a test stopped (or killed), for the next test."""
    for service in _shared:
        if not service.alive():
            service.start()


class Deployment(Protocol):
    def start(self) -> None: ...

    def close(self) -> None: ...


D = TypeVar("D", bound=Deployment)


@contextlib.contextmanager
def running(prefix: str, make: Callable[[Path], D]) -> Iterator[D]:
    """``make(folder)`` started, in a new folder named ``prefix...``, and closed after, however it ends."""
    # Under /tmp, not pytest's private folder: the services' own users must reach what a test keeps
    # there for them (the fault tests' tablespace).
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        Path(folder).chmod(0o755)
        deployment = make(Path(folder))
        try:
            deployment.start()
            yield deployment
        finally:
            deployment.close()
