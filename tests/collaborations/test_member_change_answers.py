"""The answers of member changes (a collaboration's or a study's organizations, a study created or edited)
show the members only as far as the caller's organization rules reach, as ``include=organizations`` and
``GET /organization?collaboration_id=`` do: a user allowed to edit a collaboration or a study, but whose
organization rules reach only its own organization, learns no other member's address or key by changing
the members.
"""

from __future__ import annotations

import pytest

from tests.factories import bearer, make_collab, make_org, make_study
from tests.tasks.conftest import user_with

pytestmark = pytest.mark.django_db

SECRET = "Hidden Lane 1"


@pytest.fixture
def world():
    org_a, org_b, org_c = make_org(), make_org(address1=SECRET), make_org()
    return org_a, org_b, org_c, make_collab(org_a, org_b)


def _member_ids(answer: list[dict]) -> set[int]:
    return {member["id"] for member in answer}


def test_a_collaboration_joined_shows_only_the_members_the_callers_rules_reach(api, world):
    org_a, org_b, org_c, collab = world
    # adding a member takes a global collaboration editor; its own organization it may name
    editor = user_with(org_c, "collaboration.glo.edit", "organization.org.view")

    response = api.post(
        f"/api/collaboration/{collab.pk}/organization", {"id": org_c.pk}, format="json", **bearer(editor)
    )

    assert response.status_code == 200, response.content
    assert _member_ids(response.json()) == {org_c.pk}
    assert SECRET not in response.content.decode()
    assert set(collab.organizations.values_list("pk", flat=True)) == {org_a.pk, org_b.pk, org_c.pk}


def test_a_collaboration_left_shows_only_the_members_the_callers_rules_reach(api, world):
    org_a, org_b, _org_c, collab = world
    editor = user_with(org_a, "collaboration.col.edit", "organization.org.view")

    response = api.delete(
        f"/api/collaboration/{collab.pk}/organization", {"id": org_a.pk}, format="json", **bearer(editor)
    )

    assert response.status_code == 200, response.content
    assert response.json() == []
    assert set(collab.organizations.values_list("pk", flat=True)) == {org_b.pk}


def test_a_collaboration_member_change_shows_every_member_to_a_caller_who_may_view_them(api, world):
    org_a, org_b, org_c, collab = world
    editor = user_with(org_a, "collaboration.glo.edit", "organization.glo.view")

    response = api.post(
        f"/api/collaboration/{collab.pk}/organization", {"id": org_c.pk}, format="json", **bearer(editor)
    )

    assert response.status_code == 200, response.content
    assert _member_ids(response.json()) == {org_a.pk, org_b.pk, org_c.pk}


@pytest.mark.parametrize(("method", "shown"), [("post", "own"), ("delete", "none")])
def test_a_study_member_change_shows_only_the_members_the_callers_rules_reach(api, world, method, shown):
    org_a, org_b, _org_c, collab = world
    study = make_study(collab, org_b, *([org_a] if method == "delete" else []))
    editor = user_with(org_a, "study.col.edit", "study.col.view", "organization.org.view")

    response = getattr(api, method)(
        f"/api/study/{study.pk}/organization", {"id": org_a.pk}, format="json", **bearer(editor)
    )

    assert response.status_code == 200, response.content
    assert _member_ids(response.json()) == ({org_a.pk} if shown == "own" else set())
    assert SECRET not in response.content.decode()
    expected_members = {org_b.pk} | ({org_a.pk} if method == "post" else set())
    assert set(study.organizations.values_list("pk", flat=True)) == expected_members


def test_a_study_created_or_edited_links_its_members_for_a_caller_whose_rules_do_not_reach_them(api, world):
    org_a, org_b, _org_c, collab = world
    editor = user_with(org_a, "study.col.create", "study.col.edit", "study.col.view", "organization.org.view")

    created = api.post(
        "/api/study",
        {"name": "members", "collaboration_id": collab.pk, "organization_ids": [org_a.pk, org_b.pk]},
        format="json",
        **bearer(editor),
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.json()["organizations"], str)
    assert SECRET not in created.content.decode()

    study_id = created.json()["id"]
    edited = api.patch(f"/api/study/{study_id}", {"name": "renamed"}, format="json", **bearer(editor))
    assert edited.status_code == 200, edited.content
    assert isinstance(edited.json()["organizations"], str)
    assert SECRET not in edited.content.decode()


def test_a_study_created_shows_its_members_to_a_caller_who_may_view_them(api, world):
    org_a, org_b, _org_c, collab = world
    editor = user_with(org_a, "study.col.create", "organization.col.view")

    created = api.post(
        "/api/study",
        {"name": "members", "collaboration_id": collab.pk, "organization_ids": [org_a.pk, org_b.pk]},
        format="json",
        **bearer(editor),
    )

    assert created.status_code == 201, created.content
    assert _member_ids(created.json()["organizations"]) == {org_a.pk, org_b.pk}
