"""The holder of a node's stolen API key takes a container token for every task its organization has a run
of (and its containers create subtasks, more tasks). Those tokens are one identity for the request threads,
the node's containers: flooding through many of them leaves threads for the other users, as one token's
flood does."""

from __future__ import annotations

import uuid

import pytest
import requests

from tasks.models import Run, Task
from tests.realtime.conftest import live_data, live_db, live_folder, live_world  # noqa: F401 - fixtures
from tests.realtime.helpers import LiveWorld, make_user, token
from tests.realtime.live import LIVE
from tests.realtime.slow_server import HOLD_HEADER, wait_behind
from tests.realtime.test_request_shares import slow_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.live

HOLD = 3  # seconds each request of the flood holds its thread
TASKS = 4  # four identities of the fewest threads each (8) were all 32
PER_TASK = 9


def _tasks_of_org_b(world: LiveWorld) -> list[Task]:
    tasks = []
    for _ in range(TASKS):
        task = Task(
            collaboration=world.collab_ab,
            image="i",
            job_id=uuid.uuid4().int % 10**9,
            init_org=world.org_a,
            status="pending",
        )
        task.save(using=LIVE)
        Run(task=task, organization_id=world.org_b.pk).save(using=LIVE)
        tasks.append(task)
    return tasks


def test_the_container_tokens_a_node_takes_share_one_identitys_threads(slow_server, live_world):  # noqa: F811
    node = {"Authorization": f"Bearer {token(live_world.node_b)}"}
    floods = []
    for task in _tasks_of_org_b(live_world):
        taken = requests.post(
            f"{slow_server.url}/api/token/container",
            json={"task_id": task.pk, "image": task.image},
            headers=node,
            timeout=30,
        )
        assert taken.status_code == 200, taken.text
        headers = {"Authorization": f"Bearer {taken.json()['container_token']}"}
        path = f"/api/task/{task.pk}"
        assert requests.get(f"{slow_server.url}{path}", headers=headers, timeout=30).status_code == 200
        floods.append(({**headers, HOLD_HEADER: str(HOLD)}, path))
    user = {"Authorization": f"Bearer {token(make_user(live_world.org_a, roles=('Researcher',)))}"}
    assert requests.get(f"{slow_server.url}/api/user", headers=user, timeout=30).status_code == 200
    waited, statuses = wait_behind(
        slow_server.url, [flood for _ in range(PER_TASK) for flood in floods], user
    )

    assert waited < HOLD / 3, waited  # not queued behind the flood's first requests
    assert statuses == [200] * PER_TASK * len(floods)  # the flood is answered, not refused
