"""The attacks of tests/test_attacker_sweep.py that changed the server, against a real server on a
database of its own (PostgreSQL when ``V6_DATABASE_URL`` names one): a Collaboration Admin of A
reaching organizations it does not work with, and query strings a browser would not send."""

from __future__ import annotations

import uuid

import pytest
import requests

from accounts.models import Role, User
from collaborations.models import Collaboration, Organization
from tasks.models import Task
from tests.factories import PASSWORD
from tests.realtime.helpers import make_user, token
from tests.realtime.live import LIVE

pytestmark = pytest.mark.live


def _members() -> list[tuple[int, int]]:
    return sorted(
        Collaboration.organizations.through.objects.using(LIVE).values_list("collaboration", "organization")
    )


def _call(server, method: str, path: str, who: User, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token(who)}"}
    return requests.request(method, f"{server.url}/api/{path}", headers=headers, timeout=30, **kwargs)


def test_a_collaboration_admin_reaches_no_organization_it_does_not_work_with(server, live_world):
    admin = make_user(live_world.org_a, roles=("Collaboration Admin",))
    # B also works with D, without A, on a task A's admin must not come to read.
    org_d = Organization.objects.using(LIVE).create(name=f"D-{uuid.uuid4().hex[:8]}")
    bd = Collaboration(name=f"BD-{uuid.uuid4().hex[:8]}", encrypted=False)
    bd.save(using=LIVE)
    bd.organizations.add(live_world.org_b, org_d)
    Task.objects.using(LIVE).create(collaboration=bd, init_org=live_world.org_b, image="i", job_id=0)
    members, users = _members(), User.objects.using(LIVE).count()

    taken_in = _call(server, "post", f"collaboration/{live_world.collab_ab.pk}/organization", admin,
                     json={"id": live_world.org_c.pk})  # fmt: skip
    researcher = Role.objects.using(LIVE).get(name="Researcher", is_default_role=True)
    tag = uuid.uuid4().hex[:8]
    mole = {"username": f"mole-{tag}", "email": f"{tag}@example.org", "password": PASSWORD,
            "organization_id": live_world.org_b.pk, "roles": [researcher.pk]}  # fmt: skip
    given = _call(server, "post", "user", admin, json=mole)

    assert (taken_in.status_code, given.status_code) == (401, 401), (taken_in.text, given.text)
    assert "collaborations you are not in" in given.json()["msg"]
    assert (_members(), User.objects.using(LIVE).count()) == (members, users)


@pytest.mark.parametrize(
    "query",
    [
        "organization_id={a}&organization_id={c}",
        "organization_id={c}&organization_id={a}",
        "organization_id=%2B{c}",
        "organization_id={c}%00",
        "organization_id=99999999999999999999999",
        "organization_id=" + "9" * 5000,
    ],
)
def test_query_strings_name_nothing_out_of_reach(server, live_world, query):
    researcher = make_user(live_world.org_a, roles=("Researcher",))
    Task.objects.using(LIVE).create(
        collaboration=live_world.collab_c, init_org=live_world.org_c, image="i", job_id=0
    )
    ids = {"a": live_world.org_a.pk, "c": live_world.org_c.pk}
    for resource in (
        "task?init_org_id",
        "run?organization_id",
        "user?organization_id",
        "node?organization_id",
    ):
        path = (
            resource.split("?")[0]
            + "?"
            + query.format(**ids).replace("organization_id", resource.split("?")[1])
        )
        response = _call(server, "get", path, researcher)
        assert response.status_code < 500, (path, response.text)
        if response.status_code == 200:
            rows = response.json()["data"]
            assert all(
                live_world.org_c.pk not in (row.get("init_org") or row.get("organization") or {}).values()
                for row in rows
            ), (path, rows)
