"""Deleting a study with its tasks (``delete_dependents``) deletes only tasks the caller may delete: a
Collaboration Admin of A (study rules of the collaboration, task deletion for A's tasks) must not wipe
the tasks B's researchers ran in a study of AB, nor may a member with organization-scope study deletion."""

from __future__ import annotations

import pytest

from collaborations.models import Study
from tasks.models import Run, Task
from tests.admin.browser import Browser
from tests.factories import bearer, make_study, make_task, make_user
from tests.tasks.conftest import user_with


def _deleter(world, who: str):
    if who == "collaboration-admin":
        return make_user(world.org_a, "Collaboration Admin")
    return user_with(world.org_a, "study.org.view", "study.org.delete", "task.org.delete")


@pytest.mark.parametrize("who", ["collaboration-admin", "study-org-deleter"])
def test_a_study_with_tasks_of_another_organization_stays(api, world, who):
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    own = make_task(world.collab_ab, world.org_a, world.org_a, study=study)
    theirs = make_task(world.collab_ab, world.org_b, world.org_a, world.org_b, study=study)
    deleter = _deleter(world, who)

    # The task of B is out of the deleter's reach on its own.
    assert api.delete(f"/api/task/{theirs.pk}", **bearer(deleter)).status_code == 401
    response = api.delete(f"/api/study/{study.pk}?delete_dependents=1", **bearer(deleter))

    assert response.status_code == 401, response.json()
    assert Study.objects.filter(pk=study.pk).exists()
    assert set(Task.objects.values_list("id", flat=True)) == {own.pk, theirs.pk}
    assert Run.objects.filter(task=theirs).count() == 2


@pytest.mark.parametrize("who", ["collaboration-admin", "study-org-deleter"])
def test_a_study_with_only_tasks_the_caller_deletes_goes_with_them(api, world, who):
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    own = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, study=study)
    # A subtask the algorithm's container on B's node made goes with its task, as DELETE /task takes it.
    subtask = make_task(world.collab_ab, world.org_b, world.org_a, parent=own, study=study)
    elsewhere = make_task(world.collab_ab, world.org_b, world.org_b)

    response = api.delete(f"/api/study/{study.pk}?delete_dependents=1", **bearer(_deleter(world, who)))

    assert response.status_code == 200, response.json()
    assert not Study.objects.filter(pk=study.pk).exists()
    assert not Task.objects.filter(pk__in=[own.pk, subtask.pk]).exists()
    assert Task.objects.filter(pk=elsewhere.pk).exists()


def test_the_admin_site_keeps_them_too(world):
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    theirs = make_task(world.collab_ab, world.org_b, world.org_b, study=study)
    browser = Browser(make_user(world.org_a, "Collaboration Admin").username)
    page = f"/admin/collaborations/study/{study.pk}/delete/"

    response = browser.post(page, {"post": "yes"})

    assert response.status_code == 302 and response["Location"] == page
    assert "has tasks you may not delete" in browser.get(page).content.decode()
    assert Study.objects.filter(pk=study.pk).exists() and Task.objects.filter(pk=theirs.pk).exists()

    changelist = "/admin/collaborations/study/"
    chosen = {"action": "delete_selected", "_selected_action": [study.pk], "post": "yes"}
    response = browser.post(changelist, chosen)

    assert response.status_code == 302
    assert "has tasks you may not delete" in browser.get(changelist).content.decode()
    assert Study.objects.filter(pk=study.pk).exists() and Task.objects.filter(pk=theirs.pk).exists()
