"""Two server processes writing to one SQLite file at once: every write is answered and stored.

The processes queue for the one writer SQLite allows (``vantage6.db.sqlite3``): none waits in
SQLite's busy handler, none answers "database is locked", and a request sent to either lands in the
database with its audit record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import pytest
import requests
from django.conf import settings
from django.db import connections

from accounts.models import AuditEntry
from collaborations.models import Collaboration, Organization
from nodes.models import Node
from tasks.models import AlgorithmPort, Run, Task
from tests.realtime.helpers import token
from tests.realtime.live import ROOT, Daphne

pytestmark = pytest.mark.live

SHARED = "shared_file"
RUNS = 60
THREADS = 8


@pytest.fixture
def shared_file(tmp_path, django_db_blocker):
    """A migrated SQLite file, reached from the test as ``SHARED``; the environment of its servers."""
    database = tmp_path / "shared.sqlite3"
    env = {key: value for key, value in os.environ.items() if not key.startswith("V6_")}
    env.update(
        V6_DATA_DIR=str(tmp_path),
        V6_DATABASE_URL=f"sqlite:///{database}",
        V6_SECRET_KEY=settings.SECRET_KEY,
        V6_JWT_SECRET_KEY=settings.JWT_SECRET_KEY,
        V6_LOG_LEVEL="warning",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    configured = connections.configure_settings(
        {
            "default": settings.DATABASES["default"],
            SHARED: {"ENGINE": "vantage6.db.sqlite3", "NAME": str(database)},
        }
    )
    connections.settings[SHARED] = configured[SHARED]
    with django_db_blocker.unblock():
        yield env
        connections[SHARED].close()
    del connections[SHARED]
    del connections.settings[SHARED]


def seed() -> tuple[Node, list[Run]]:
    """A node and ``RUNS`` runs of its organization, in tasks of its collaboration."""
    org = Organization.objects.using(SHARED).create(name=f"org-{uuid.uuid4().hex[:8]}")
    collab = Collaboration(name="collab", encrypted=False)
    collab.save(using=SHARED)
    collab.organizations.add(org)
    node = Node(name="node", organization=org, collaboration=collab, status="online")
    node.set_api_key(str(uuid.uuid4()))
    node.save(using=SHARED)
    runs = []
    for _ in range(RUNS // 2):
        task = Task.objects.using(SHARED).create(
            collaboration=collab, init_org=org, image="some/image", job_id=0
        )
        runs += [Run.objects.using(SHARED).create(task=task, organization=org, input="in") for _ in range(2)]
    return node, runs


def test_two_processes_write_at_once_and_every_write_is_stored(shared_file, tmp_path):
    node, runs = seed()
    headers = {"Authorization": f"Bearer {token(node)}"}
    servers = [Daphne(shared_file, tmp_path), Daphne(shared_file, tmp_path)]
    try:
        sessions = cycle(servers)
        # Per run: active, a port, completed; each request to the other server than the one before.
        work = [(run, next(sessions).url) for run in runs]

        def update(item: tuple[Run, str]) -> list[int]:
            run, url = item
            other = servers[0].url if url == servers[1].url else servers[1].url
            return [
                requests.patch(
                    f"{url}/api/run/{run.pk}", json={"status": "active"}, headers=headers, timeout=60
                ),
                requests.post(
                    f"{other}/api/port",
                    json={"port": 8080, "run_id": run.pk, "label": "api"},
                    headers=headers,
                    timeout=60,
                ),
                requests.patch(
                    f"{url}/api/run/{run.pk}",
                    json={"status": "completed", "result": "r" * 10240, "log": "ok"},
                    headers=headers,
                    timeout=60,
                ),
            ]

        with ThreadPoolExecutor(THREADS) as pool:
            answers = [response for responses in pool.map(update, work) for response in responses]
    finally:
        for server in servers:
            server.stop()

    failed = [
        (response.status_code, response.text[:200]) for response in answers if response.status_code >= 300
    ]
    assert failed == []
    stored = Run.objects.using(SHARED).filter(pk__in=[run.pk for run in runs])
    assert list(stored.values_list("status", flat=True).distinct()) == ["completed"]
    assert {len(result) for result in stored.values_list("result", flat=True)} == {10240}
    assert AlgorithmPort.objects.using(SHARED).filter(run__in=stored).count() == RUNS
    assert list(Task.objects.using(SHARED).values_list("status", flat=True).distinct()) == ["completed"]
    logged = AuditEntry.objects.using(SHARED).filter(actor_id=node.pk).values_list("action", flat=True)
    assert sorted(set(logged)) == ["port.create", "run.update"]
    assert len(logged) == 3 * RUNS
