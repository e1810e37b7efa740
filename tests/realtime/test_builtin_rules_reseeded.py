"""A seeding of the rule catalogue by another process (an upgrade's ``manage.py bootstrap``) gives the
built-in node and container roles their new rules in a running server at once, without a restart."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from accounts.catalogue import CONTAINER, NODE
from accounts.models import Role, Rule
from accounts.tokens import container_token
from tests.realtime.helpers import create_task, make_user, token
from tests.realtime.live import LIVE, ROOT

pytestmark = pytest.mark.live


def test_a_bootstrap_in_another_process_reaches_a_running_servers_nodes_and_containers(
    own_server, live_db, live_world
):
    node = live_world.node_a
    # A catalogue of an older version: the built-in roles lack the rule to view their collaborations' tasks.
    task_view = Rule.objects.using(LIVE).get(name="task", scope="COLLABORATION", operation="VIEW")
    for role in Role.objects.using(LIVE).filter(name__in=(NODE, CONTAINER), is_default_role=True):
        role.rules.remove(task_view)
    admin = make_user(live_world.org_a, roles=("Root",))
    task_id = create_task(own_server.url, admin, live_world.collab_ab)
    container = container_token(
        {
            "client_type": "container",
            "node_id": node.pk,
            "node_generation": node.token_generation,
            "organization_id": node.organization_id,
            "collaboration_id": live_world.collab_ab.pk,
            "study_id": None,
            "store_id": None,
            "task_id": task_id,
            "image": "some/image",
            "databases": [],
        }
    )
    callers = {"node": token(node), "container": container}

    def statuses() -> dict[str, int]:
        url = f"{own_server.url}/api/task/{task_id}"
        return {
            name: requests.get(url, headers={"Authorization": f"Bearer {raw}"}, timeout=10).status_code
            for name, raw in callers.items()
        }

    assert statuses() == {"node": 401, "container": 401}  # the server has read the roles' rules

    upgrade = subprocess.run(
        [sys.executable, "manage.py", "bootstrap"],
        cwd=ROOT,
        env=live_db.process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stderr

    assert statuses() == {"node": 200, "container": 200}
