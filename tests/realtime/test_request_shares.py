"""One identity (a user, or a node's stolen key) sending many slow requests at once holds at most its share of
a process's request threads (``V6_REQUEST_THREADS_PER_IDENTITY``): its further requests wait their turn, and
another user's request is answered meanwhile, as is one without a token."""

from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest
import requests
from django.conf import settings

from accounts.tokens import container_token
from nodes.models import Node
from tasks.models import Run, Task
from tests.realtime.helpers import LiveWorld, make_user, token
from tests.realtime.live import LIVE, Daphne
from tests.realtime.slow_server import HOLD_HEADER, wait_behind
from vantage6.handler import FAIR_SHARE_FLOOR, MAX_THREADS

pytestmark = pytest.mark.live

HOLD = 3  # seconds each of the flood's requests holds its thread
FLOOD = MAX_THREADS + 8  # more requests at once than a process has threads
SHARE = settings.REQUEST_THREADS_PER_IDENTITY  # the server's too: it reads the same environment


@pytest.fixture
def slow_server(live_db, live_folder):
    command = [sys.executable, "-c", "import tests.realtime.slow_server as s; s.main()"]
    server = Daphne(live_db.process_env(), live_folder, command)
    yield server
    server.stop()


def _containers_of_one_task(world: LiveWorld) -> tuple[dict[str, str], dict[str, str], str]:
    """The headers of the algorithm containers of one running task of collaboration AB on the nodes of A
    and of B, and the task's path."""
    task = Task(
        collaboration=world.collab_ab,
        image="i",
        job_id=uuid.uuid4().int % 10**9,
        init_org=world.org_a,
        status="pending",  # its runs are
    )
    task.save(using=LIVE)
    headers = []
    for node in (world.node_a, world.node_b):
        Run(task=task, organization_id=node.organization_id).save(using=LIVE)
        identity = {
            "client_type": "container", "node_id": node.pk, "organization_id": node.organization_id,
            "node_generation": Node.objects.using(LIVE).get(pk=node.pk).token_generation,
            "collaboration_id": task.collaboration_id, "task_id": task.pk, "image": task.image,
        }  # fmt: skip
        headers.append({"Authorization": f"Bearer {container_token(identity)}"})
    return headers[0], headers[1], f"/api/task/{task.pk}"


@pytest.mark.parametrize(
    "flooder", ["user", "user spelling its header two ways", "algorithm container", "anonymous"]
)
def test_one_identitys_slow_requests_leave_threads_for_the_others(slow_server, live_world, flooder):
    """A user's flood leaves threads for another user and for requests without a token, also when half of
    it separates ``Bearer`` from the token by a no-break space (which Django's reading of the header takes
    as a space); the flood of a container on B's node (its key stolen) leaves threads for the container of
    the same task on A's node; a flood without a token (all such requests are one identity) leaves threads
    for a user."""
    user = {"Authorization": f"Bearer {token(make_user(live_world.org_b, roles=('Researcher',)))}"}
    # Without a token: a header that no answer is replayed for, so that the request reaches a thread.
    anonymous = ({"X-Request-Id": "1"}, "/api/version")
    others = [(user, "/api/user")]
    if flooder == "algorithm container":
        container_a, container_b, flood_path = _containers_of_one_task(live_world)
        floods = [container_b]
        others.append((container_a, flood_path))
    elif flooder.startswith("user"):
        flood_token = token(make_user(live_world.org_a, roles=("Researcher",)))
        floods = [{"Authorization": f"Bearer {flood_token}"}]
        if flooder != "user":
            floods.append({"Authorization": f"Bearer\xa0{flood_token}"})
        flood_path = "/api/user"
        others.append(anonymous)
    else:
        floods, flood_path = [anonymous[0]], anonymous[1]
    floods = [{**flood, HOLD_HEADER: str(HOLD)} for flood in floods]
    for headers, path in others:  # the server is warm
        assert requests.get(f"{slow_server.url}{path}", headers=headers, timeout=30).status_code == 200
    answers: list[tuple[int, float]] = []
    started = time.monotonic()

    def flood_once(headers: dict[str, str]) -> None:
        status = requests.get(f"{slow_server.url}{flood_path}", headers=headers, timeout=60).status_code
        answers.append((status, time.monotonic() - started))

    callers = [
        threading.Thread(target=flood_once, args=(floods[number % len(floods)],)) for number in range(FLOOD)
    ]
    for caller in callers:
        caller.start()
    time.sleep(1)  # the flood holds its threads
    waits = []
    for headers, path in others:
        asked = time.monotonic()
        assert requests.get(f"{slow_server.url}{path}", headers=headers, timeout=30).status_code == 200
        waits.append(time.monotonic() - asked)
    for caller in callers:
        caller.join(60)
    # Before the flood's first requests end (HOLD seconds in): not queued behind them.
    assert max(waits) < HOLD / 3, waits
    # Every request of the flood is answered, not refused; at most SHARE of them at once.
    assert [status for status, _ in answers] == [200] * FLOOD
    rounds = -(-FLOOD // SHARE)
    assert max(seconds for _, seconds in answers) >= rounds * HOLD * 0.9, answers


@pytest.mark.parametrize(
    ("flooding", "each"),
    [(2, SHARE + 4), (5, FAIR_SHARE_FLOOR + 1)],
    ids=["two identities, more than their shrunk share each", "five identities, more than the floor each"],
)
def test_identities_flooding_together_leave_threads_for_a_newcomer(slow_server, live_world, flooding, each):
    """Two full shares were every thread, and so were four or more at the share's floor of 8: the share
    shrinks as more identities hold threads, and the identities holding threads leave some for one
    holding none, so a newcomer's request is answered at once while the others' slow requests fill theirs."""
    orgs = (live_world.org_a, live_world.org_b)
    flooders = [
        {
            "Authorization": f"Bearer {token(make_user(orgs[n % 2], roles=('Researcher',)))}",
            HOLD_HEADER: str(HOLD),
        }
        for n in range(flooding)
    ]
    newcomer = {"Authorization": f"Bearer {token(make_user(live_world.org_c, roles=('Researcher',)))}"}
    for headers in [*flooders, newcomer]:  # the server is warm
        plain = {name: value for name, value in headers.items() if name != HOLD_HEADER}
        assert requests.get(f"{slow_server.url}/api/user", headers=plain, timeout=30).status_code == 200
    floods = [(headers, "/api/user") for _ in range(each) for headers in flooders]
    waited, statuses = wait_behind(slow_server.url, floods, newcomer)

    assert waited < HOLD / 3, waited  # not queued behind the floods' first requests
    assert statuses == [200] * len(floods)  # the floods are answered, not refused
