"""The suite on several pytest-xdist workers (``make test`` runs ``-n auto``; plain ``pytest`` runs serially).

Each worker has a PostgreSQL test database of its own (pytest-django adds ``_gw<N>`` to its name) and a
RabbitMQ virtual host of its own, ``<vhost>_gw<N>`` (``test_gw<N>`` for the default vhost): on one vhost,
workers would hear each other's events, since each test database has a collaboration 1 and a group is
a binding on the vhost's exchange. A missing vhost is created with ``rabbitmqctl`` when the broker is
the one ``scripts/services-start.sh`` started for this checkout (as root). Elsewhere the vhosts must
exist: ``-n auto`` then uses only as many workers as have one (none, a serial run, below two), and an
explicit ``-n`` stops with the command that creates them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import carehare
import pytest
from _pytest.nodeid import coerce_node_id

ROOT = Path(__file__).resolve().parent.parent
# The key of the worker's broker URI in xdist's ``workerinput``.
WORKER_URI = "v6_rabbitmq_uri"
_CHECK_SECONDS = 5


def worker_uris(base: str, count: int) -> list[str]:
    """The broker URIs of workers ``gw0`` ... : ``base`` on the vhost of each."""
    url = urlsplit(base)
    vhost = unquote(url.path[1:]).strip("/") or "test"
    return [
        url._replace(path="/" + quote(f"{vhost}_gw{number}", safe="")).geturl() for number in range(count)
    ]


def _reachable(uri: str) -> bool:
    async def login() -> None:
        broker = carehare.Connection(uri, connect_timeout=_CHECK_SECONDS)
        await asyncio.wait_for(broker.connect(), _CHECK_SECONDS)
        await asyncio.wait_for(broker.close(), _CHECK_SECONDS)

    try:
        asyncio.run(login())
    except Exception:  # refused, unknown vhost, no access, timeout: not usable, whatever the cause
        return False
    return True


def _vhost(uri: str) -> str:
    return unquote(urlsplit(uri).path[1:])


def _create(uris: list[str]) -> str | None:
    """Create the vhosts of ``uris`` on this checkout's broker, for their user; why not, or None."""
    state_file = Path(os.environ.get("V6_SERVICES_DIR") or ROOT / ".services") / "state.env"
    state = (
        dict(line.split("=", 1) for line in state_file.read_text().splitlines())
        if state_file.exists()
        else {}
    )
    url = urlsplit(uris[0])
    if "RMQ_PORT" not in state or state["RMQ_PORT"] != str(url.port or 5672) or url.hostname != "127.0.0.1":
        return "the broker is not the one scripts/services-start.sh started for this checkout"
    if os.geteuid() != 0:
        return "rabbitmqctl needs root"
    env = {**os.environ, "RABBITMQ_NODENAME": "rabbit@localhost", "ERL_EPMD_ADDRESS": "127.0.0.1",
           "ERL_EPMD_PORT": state["EPMD_PORT"]}  # fmt: skip
    user = unquote(url.username or "guest")
    for uri in uris:
        for command in (
            ["add_vhost", _vhost(uri)],
            ["set_permissions", "-p", _vhost(uri), user, ".*", ".*", ".*"],
        ):
            done = subprocess.run(["rabbitmqctl", "-q", *command], env=env, capture_output=True, text=True)
            if done.returncode:
                return f"rabbitmqctl {' '.join(command)} failed: {done.stderr.strip()}"
    return None


def _usable(base: str, count: int) -> tuple[int, str]:
    """How many of the first ``count`` workers have a vhost (creating missing ones when possible), and
    why not all of them."""
    uris = worker_uris(base, count)
    missing = [uri for uri in uris if not _reachable(uri)]
    why = _create(missing) if missing else None
    if missing and why is None:
        missing = [uri for uri in missing if not _reachable(uri)]
        why = "created, but still not reachable"
    if not missing:
        return count, ""
    names = ", ".join(_vhost(uri) for uri in missing)
    return uris.index(missing[0]), (
        f"RabbitMQ has no virtual host {names} for the workers ({why}); "
        f"create them (rabbitmqctl add_vhost NAME; rabbitmqctl set_permissions -p NAME USER '.*' '.*' '.*')"
    )


# The broker URIs no worker has; a worker that replaces one that crashed takes the one it left.
_free = pytest.StashKey[list[str]]()


def auto_count(config: pytest.Config) -> int:
    """``-n auto``: a worker per core, as far as there are vhosts for them; 0 (serially) below two."""
    count = len(os.sched_getaffinity(0))
    base = os.environ.get("V6_RABBITMQ_URI")
    if not base or count < 2:
        return count
    usable, why = _usable(base, count)
    if usable < count:
        print(f"{why}: {'serially' if usable < 2 else f'on {usable} workers'}", file=sys.stderr)
    if usable < 2:
        return 0
    config.stash[_free] = worker_uris(base, usable)
    return usable


def prepare(config: pytest.Config, count: int) -> None:
    """Before ``count`` workers start: their vhosts, or a stop that says how to make them."""
    base = os.environ.get("V6_RABBITMQ_URI")
    if not base or _free in config.stash:
        return
    usable, why = _usable(base, count)
    if usable < count:
        pytest.exit(f"{why}, or run with -n auto or -n 0", returncode=pytest.ExitCode.USAGE_ERROR)
    config.stash[_free] = worker_uris(base, count)


def assign(node) -> None:
    if _free in node.config.stash:
        node.workerinput[WORKER_URI] = node.config.stash[_free].pop(0)


def release(node) -> None:
    if uri := node.workerinput.get(WORKER_URI):
        node.config.stash[_free].append(uri)


def configure_worker(config: pytest.Config) -> None:
    """In a worker: an in-memory SQLite test database (or a file: ``V6_TEST_SQLITE_DIR``), and its vhost
    for the tests, the channel layer and the servers the tests start."""
    if not hasattr(config, "workerinput"):
        return
    from django.conf import settings

    # pytest-django gives each worker a database of its own by a suffix on the test database's name,
    # and recognizes SQLite by Django's engine name only: on vantage6.db.sqlite3 it would name a file
    # "test_<path>_gw0". The name Django takes by default, in memory, is each worker's own already.
    # V6_TEST_SQLITE_DIR: a file there instead (pytest-django adds the worker's suffix), as `make run` keeps
    # its data: only a file database commits its writers in groups (vantage6.db.sqlite3).
    files = os.environ.get("V6_TEST_SQLITE_DIR")
    for database in settings.DATABASES.values():
        if database["ENGINE"].endswith("sqlite3") and not database.get("TEST", {}).get("NAME"):
            name = os.path.join(files, "test.sqlite3") if files else ":memory:"
            database.setdefault("TEST", {})["NAME"] = name
    uri = config.workerinput.get(WORKER_URI)
    if uri:
        os.environ["V6_RABBITMQ_URI"] = uri
        # The settings were read before the worker knew its vhost; nothing has used them yet.
        settings.RABBITMQ_URI = uri
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["host"] = uri


def group(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker under ``--dist loadgroup``: the node id of a test marked ``xdist_group(name)`` ends in
    ``@name``, which is how the controller sends a group to one worker. pytest-xdist 3.8 writes that
    suffix to an attribute pytest 9 no longer reads the node id from, so every group was spread over
    all workers: deployments of their own started side by side, racing for ports and cores."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        marks = item.iter_markers("xdist_group")
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks})
        suffix = f"@{'_'.join(names)}"
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)  # what pytest-xdist means to do
