"""What a node's key, stolen, still does: a node publishes its organization's public key and nothing
else of it (vantage6: the node role's organization edit rule lets it rename and re-address the
organization every partner sees)."""

from __future__ import annotations

import base64

import pytest

from collaborations.models import Organization
from tests.factories import bearer, make_collab, make_node, make_task, make_user
from tests.security.unreadable import assert_reads_none_of

pytestmark = pytest.mark.django_db

KEY = base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nnode\n-----END PUBLIC KEY-----\n").decode()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Trusted Hospital"},
        {"domain": "evil.example", "address1": "elsewhere", "country": "XX", "zipcode": "0000"},
        {"public_key": KEY, "name": "Trusted Hospital"},
    ],
)
def test_a_node_cannot_rename_or_readdress_its_organization(api, world, body):
    url = f"/api/organization/{world.org_a.pk}"

    response = api.patch(url, body, format="json", **bearer(world.node_a))

    assert response.status_code == 401
    assert "public_key" in response.json()["msg"]
    stored = Organization.objects.get(pk=world.org_a.pk)
    assert (stored.name, stored.domain, stored.country, stored.public_key) == (
        world.org_a.name, world.org_a.domain, world.org_a.country, ""
    )  # fmt: skip


def test_a_node_still_publishes_its_key_and_its_organizations_admin_still_renames_it(api, world):
    url = f"/api/organization/{world.org_a.pk}"

    published = api.patch(url, {"public_key": KEY}, format="json", **bearer(world.node_a))
    renamed = api.patch(
        url, {"name": "A renamed"}, format="json", **bearer(make_user(world.org_a, "Organization Admin"))
    )

    assert (published.status_code, published.json()["public_key"]) == (200, KEY)
    assert (renamed.status_code, renamed.json()["name"]) == (200, "A renamed")


@pytest.fixture
def other_collaboration(world):
    """Organization A also in collaboration AC with C (served by another node of A), with a task of C
    there whose run at A holds a result."""
    ac = make_collab(world.org_a, world.org_c, name="AC")
    make_node(world.org_a, ac, "node-a-in-ac")
    task = make_task(ac, world.org_c, world.org_a)
    task.runs.update(result="c2VjcmV0", input="c2VjcmV0")
    return ac, task


def test_a_node_reads_nothing_of_its_organizations_other_collaborations(api, world, other_collaboration):
    ac, task = other_collaboration
    run = task.runs.get()
    thief = bearer(world.node_a)  # node of A in AB

    assert_reads_none_of(
        api,
        thief,
        {
            "/api/task": task.pk,
            "/api/run": run.pk,
            "/api/result": run.pk,
            "/api/collaboration": ac.pk,
            "/api/organization": world.org_c.pk,
        },
        [
            f"/api/task?collaboration_id={ac.pk}",
            f"/api/run?task_id={task.pk}",
            f"/api/result?task_id={task.pk}",
        ],
    )


@pytest.mark.usefixtures("other_collaboration")
def test_a_node_still_reads_its_own_collaboration(api, world):
    task = make_task(world.collab_ab, world.org_b, world.org_a)
    run = task.runs.get()
    node = bearer(world.node_a)

    assert api.get(f"/api/task/{task.pk}", **node).status_code == 200
    assert api.get(f"/api/result/{run.pk}", **node).status_code == 200
    assert api.get(f"/api/organization/{world.org_b.pk}", **node).status_code == 200
    assert api.get(f"/api/collaboration/{world.collab_ab.pk}", **node).status_code == 200
    open_runs = api.get(f"/api/run?state=open&node_id={world.node_a.pk}&include=task", **node).json()["data"]
    assert [row["id"] for row in open_runs] == [run.pk]
