"""/api/study and /api/study/<id>/organization."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, Rule
from collaborations.models import Study
from tasks.models import Task
from tests.collaborations.helpers import container_headers, headers_of, ids, ref
from tests.factories import bearer, make_study, make_task, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies(world) -> dict[str, Study]:
    """A study of collaboration AB with A, one of AB without A, and one of C."""
    return {
        "with own organization": make_study(world.collab_ab, world.org_a, world.org_b, name="s-ab"),
        "in own collaboration": make_study(world.collab_ab, world.org_b, name="s-b"),
        "unrelated": make_study(world.collab_c, world.org_c, name="s-c"),
    }


def test_nodes_and_containers(api, world, studies):
    assert ids(api.get("/api/study", **bearer(world.node_a))) == [studies["with own organization"].pk]
    study = studies["with own organization"]
    assert api.get(f"/api/study/{study.pk}", **container_headers(world.node_a)).status_code == 200
    assert api.get("/api/study", **container_headers(world.node_a)).status_code == 401
    assert (
        api.patch(f"/api/study/{study.pk}", {"name": "x"}, format="json", **bearer(world.node_a)).status_code
        == 401
    )


def test_representation(api, world, studies):
    study = studies["with own organization"]
    viewer = headers_of(world.org_a, "Viewer")
    assert api.get(f"/api/study/{study.pk}", **viewer).json() == {
        "id": study.pk, "name": "s-ab", "collaboration": ref("collaboration", world.collab_ab.pk),
        "organizations": f"/api/organization?study_id={study.pk}", "tasks": f"/api/task?study_id={study.pk}",
    }  # fmt: skip
    included = api.get(f"/api/study/{study.pk}?include=organizations", **viewer).json()
    assert [org["name"] for org in included["organizations"]] == ["A", "B"]
    listed = api.get("/api/study?include=organizations", **viewer).json()["data"]
    assert [org["name"] for org in listed[0]["organizations"]] == ["A", "B"]


def test_list_filters(api, world, studies):
    root = headers_of(world.org_a, "Root")
    assert ids(api.get("/api/study?name=s-_", **root)) == [
        studies["in own collaboration"].pk,
        studies["unrelated"].pk,
    ]
    assert ids(api.get(f"/api/study?organization_id={world.org_b.pk}", **root)) == [
        studies["with own organization"].pk, studies["in own collaboration"].pk,
    ]  # fmt: skip
    assert ids(api.get(f"/api/study?collaboration_id={world.collab_c.pk}", **root)) == [
        studies["unrelated"].pk
    ]


def test_list_filters_are_gated(api, world, studies):
    viewer = headers_of(world.org_a, "Viewer")
    # Organization scope: only the own organization may be asked for.
    assert api.get(f"/api/study?organization_id={world.org_b.pk}", **viewer).status_code == 401
    assert ids(api.get(f"/api/study?organization_id={world.org_a.pk}", **viewer)) == [
        studies["with own organization"].pk
    ]
    assert api.get(f"/api/study?collaboration_id={world.collab_c.pk}", **viewer).status_code == 401
    admin = headers_of(world.org_a, "Collaboration Admin")
    assert api.get(f"/api/study?organization_id={world.org_b.pk}", **admin).status_code == 200
    assert api.get(f"/api/study?collaboration_id={world.collab_ab.pk}", **admin).status_code == 200


def test_create(api, world):
    admin = headers_of(world.org_a, "Collaboration Admin")
    body = {
        "name": "new",
        "collaboration_id": world.collab_ab.pk,
        "organization_ids": [world.org_a.pk, world.org_b.pk],
    }
    response = api.post("/api/study", body, format="json", **admin)
    assert response.status_code == 201
    assert [org["id"] for org in response.json()["organizations"]] == [world.org_a.pk, world.org_b.pk]
    assert response.json()["collaboration"] == ref("collaboration", world.collab_ab.pk)
    duplicate = api.post("/api/study", body, format="json", **admin)
    assert duplicate.status_code == 400
    outsider = {**body, "name": "other", "organization_ids": [world.org_c.pk]}
    assert api.post("/api/study", outsider, format="json", **admin).status_code == 400
    unknown = {**body, "name": "other", "collaboration_id": 99999}
    assert (
        api.post("/api/study", unknown, format="json", **headers_of(world.org_a, "Root")).status_code == 404
    )
    for bad in ({**body, "organization_ids": []}, {**body, "organization_ids": [1, 1]}, {"name": "x"}):
        assert api.post("/api/study", bad, format="json", **admin).status_code == 400
    assert not Study.objects.filter(name="other").exists()


def test_patch(api, world, studies):
    admin = headers_of(world.org_a, "Collaboration Admin")
    study = studies["in own collaboration"]
    response = api.patch(
        f"/api/study/{study.pk}",
        {"name": "renamed", "organization_ids": [world.org_a.pk], "collaboration_id": world.collab_c.pk},
        format="json",
        **admin,
    )
    assert response.status_code == 200
    assert response.json()["name"] == "renamed"
    assert [org["id"] for org in response.json()["organizations"]] == [world.org_a.pk]
    study.refresh_from_db()
    assert study.collaboration_id == world.collab_ab.pk
    outsider = api.patch(
        f"/api/study/{study.pk}", {"organization_ids": [world.org_c.pk]}, format="json", **admin
    )
    assert outsider.status_code == 400
    assert api.patch(f"/api/study/{study.pk}", {"name": "s-ab"}, format="json", **admin).status_code == 400
    assert api.patch("/api/study/9999", {"name": "x"}, format="json", **admin).status_code == 401


def test_members(api, world, studies):
    admin = headers_of(world.org_a, "Collaboration Admin")
    study = studies["in own collaboration"]
    url = f"/api/study/{study.pk}/organization"
    added = api.post(url, {"id": world.org_a.pk}, format="json", **admin)
    assert added.status_code == 200
    assert [org["id"] for org in added.json()] == [world.org_a.pk, world.org_b.pk]
    assert api.post(url, {"id": world.org_a.pk}, format="json", **admin).status_code == 200
    assert api.post(url, {"id": world.org_c.pk}, format="json", **admin).status_code == 400
    assert api.post(url, {"id": 99999}, format="json", **admin).status_code == 404
    removed = api.delete(url, {"id": world.org_b.pk}, format="json", **admin)
    assert [org["id"] for org in removed.json()] == [world.org_a.pk]
    assert api.delete(url, {"id": world.org_b.pk}, format="json", **admin).status_code == 400
    assert api.post("/api/study/9999/organization", {"id": 1}, format="json", **admin).status_code == 404


def test_delete_with_tasks_needs_the_flag(api, world, studies):
    admin = headers_of(world.org_a, "Collaboration Admin")
    study = studies["with own organization"]
    task = make_task(world.collab_ab, world.org_a, world.org_a, study=study)
    refused = api.delete(f"/api/study/{study.pk}", **admin)
    assert refused.status_code == 400
    assert "delete_dependents" in refused.json()["msg"]
    assert api.delete(f"/api/study/{study.pk}?delete_dependents=true", **admin).status_code == 200
    assert not Task.objects.filter(pk=task.pk).exists()
    assert not Study.objects.filter(pk=study.pk).exists()


@pytest.fixture
def organization_editor(world) -> dict[str, str]:
    """A user of A whose only study rules are organization-scope view and edit (rules 77 and 81)."""
    rules = Rule.objects.filter(name="study", scope="ORGANIZATION", operation__in=["VIEW", "EDIT"])
    return bearer(make_user(world.org_a, rules=rules))


def members_of(study: Study) -> list[int]:
    return sorted(study.organizations.values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("members", "body"),
    [
        ("A and B", lambda w: {"organization_ids": [w.org_a.pk]}),  # drops B
        ("A", lambda w: {"organization_ids": [w.org_a.pk, w.org_b.pk]}),  # brings B in
        ("A", lambda w: {"name": "renamed", "organization_ids": [w.org_b.pk]}),  # swaps A for B
    ],
    ids=["remove a member", "add a member", "replace the members"],
)
def test_an_organization_scope_editor_cannot_change_the_members(
    api, world, organization_editor, members, body
):
    study = make_study(world.collab_ab, world.org_a, *([world.org_b] if members == "A and B" else []))
    before = (study.name, members_of(study), AuditEntry.objects.count())
    response = api.patch(f"/api/study/{study.pk}", body(world), format="json", **organization_editor)
    assert response.status_code == 401
    assert response.json() == {"msg": "You lack the permission to do that!"}
    study.refresh_from_db()
    assert (study.name, members_of(study), AuditEntry.objects.count()) == before
    # The sub-endpoints, which the same rules do not pass either.
    url = f"/api/study/{study.pk}/organization"
    assert api.post(url, {"id": world.org_b.pk}, format="json", **organization_editor).status_code == 401


def test_an_organization_scope_editor_may_rename_and_resend_the_members(api, world, organization_editor):
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    body = {"name": "renamed", "organization_ids": [world.org_b.pk, world.org_a.pk]}
    response = api.patch(f"/api/study/{study.pk}", body, format="json", **organization_editor)
    assert response.status_code == 200
    study.refresh_from_db()
    assert (study.name, members_of(study)) == ("renamed", [world.org_a.pk, world.org_b.pk])
