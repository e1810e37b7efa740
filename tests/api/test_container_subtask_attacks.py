"""A container's subtask as a hostile algorithm would try it, with the token its node got: after its task
was killed or deleted or its own run ended (also while the subtask is checked), to organizations outside
the collaboration or a study it is not in. Each is refused and creates nothing, and a proper subtask takes
what it inherits from the task as it is now."""

from __future__ import annotations

import pytest

from tasks import services
from tasks.models import Task
from tests.collaborations.helpers import headers_of
from tests.factories import bearer, make_org, make_study, make_task, make_user
from tests.tasks.conftest import ENCRYPTED as ENCRYPTED_INPUT
from tests.tasks.conftest import container_headers_from, plain, task_body

pytestmark = pytest.mark.django_db

ENDED = {"msg": "This container token is no longer valid"}


@pytest.fixture
def parent(world):
    return make_task(world.collab_ab, world.org_a, world.org_a, world.org_b, init_user=make_user(world.org_a))


def _subtask(world, parent, **overrides) -> dict:
    organizations = [{"id": world.org_b.pk, "input": plain()}]
    return {**task_body(world, image=parent.image, organizations=organizations), **overrides}


def _killed(api, world, parent) -> None:
    response = api.post("/api/kill/task", {"id": parent.pk}, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 200, response.json()


def _deleted(api, world, parent) -> None:
    response = api.delete(f"/api/task/{parent.pk}", **headers_of(world.org_a, "Root"))
    assert response.status_code == 200, response.json()


def _own_run_ended(api, world, parent) -> None:
    """Node A's run completes (its container is gone); node B's run, and so the task, goes on."""
    run = parent.runs.get(organization=world.org_a)
    response = api.patch(f"/api/run/{run.pk}", {"status": "completed"}, format="json", **bearer(world.node_a))
    assert response.status_code == 200, response.json()
    parent.refresh_from_db()
    assert parent.status in ("pending", "active")


@pytest.mark.parametrize("end", [_killed, _deleted, _own_run_ended])
def test_no_subtask_once_the_task_is_killed_or_deleted(api, world, parent, end):
    headers = container_headers_from(api, world.node_a, parent)
    end(api, world, parent)
    tasks = Task.objects.count()
    response = api.post("/api/task", _subtask(world, parent), format="json", **headers)
    assert (response.status_code, response.json()) == (401, ENDED)
    assert Task.objects.count() == tasks


@pytest.mark.parametrize("end", [_killed, _deleted, _own_run_ended])
def test_no_subtask_once_the_task_ends_during_the_checks(api, world, parent, monkeypatch, end):
    """The token's check passed; the task is killed or deleted before the subtask is written."""
    headers = container_headers_from(api, world.node_a, parent)
    write = services._write_task
    ended = []

    def ended_first(*args, **kwargs):
        if not ended:  # after every check, before the write
            ended.append(parent.pk)
            end(api, world, parent)
        return write(*args, **kwargs)

    monkeypatch.setattr(services, "_write_task", ended_first)
    response = api.post("/api/task", _subtask(world, parent), format="json", **headers)
    assert (response.status_code, response.json()) == (401, ENDED)
    assert not Task.objects.exclude(pk=parent.pk).exists()


def test_no_subtask_for_an_organization_outside_the_collaboration(api, world, parent):
    headers = container_headers_from(api, world.node_a, parent)
    outsiders = [{"id": world.org_c.pk, "input": plain()}, {"id": make_org("new").pk, "input": plain()}]
    for organization in outsiders:
        response = api.post(
            "/api/task", _subtask(world, parent, organizations=[organization]), format="json", **headers
        )
        assert response.status_code == 400, response.json()
    assert Task.objects.count() == 1


def test_no_subtask_in_a_study_without_its_organizations(api, world, parent):
    headers = container_headers_from(api, world.node_a, parent)
    only_a = make_study(world.collab_ab, world.org_a)
    other_collaboration = make_study(world.collab_c, world.org_c)
    for study in (only_a, other_collaboration):
        response = api.post("/api/task", _subtask(world, parent, study_id=study.pk), format="json", **headers)
        # A study it may not see is the 401 of what it may not see.
        assert response.status_code == (400 if study is only_a else 401), response.json()
    assert Task.objects.count() == 1


def test_a_subtask_inherits_from_the_task_as_it_is(api, world, parent):
    headers = container_headers_from(api, world.node_a, parent)
    response = api.post(
        "/api/task", _subtask(world, parent, image="other/" + parent.image), format="json", **headers
    )
    assert response.status_code == 201, response.json()
    child = Task.objects.get(pk=response.json()["id"])
    assert (child.parent_id, child.job_id, child.init_user_id) == (
        parent.pk,
        parent.job_id,
        parent.init_user_id,
    )
    assert (child.image, child.init_org_id) == (parent.image, world.org_a.pk)


def test_a_containers_token_reads_nothing_once_its_run_ended(api, world, parent):
    """A token the algorithm let out (in its result, say) is of no use once its run is over, though other
    organizations' runs keep the task open."""
    headers = container_headers_from(api, world.node_a, parent)
    assert api.get(f"/api/task/{parent.pk}", **headers).status_code == 200
    _own_run_ended(api, world, parent)
    reads = (f"/api/task/{parent.pk}", f"/api/run?task_id={parent.pk}", f"/api/result?task_id={parent.pk}")
    for path in reads:
        response = api.get(path, **headers)
        assert (response.status_code, response.json()) == (401, ENDED), path


def test_no_container_token_for_a_run_that_ended(api, world, parent):
    _own_run_ended(api, world, parent)
    response = api.post(
        "/api/token/container",
        {"task_id": parent.pk, "image": parent.image},
        format="json",
        **bearer(world.node_a),
    )
    assert (response.status_code, response.json()) == (
        400,
        {"msg": "The run of your node's organization is already finished!"},
    )
    assert (
        api.post(  # node B's run goes on
            "/api/token/container",
            {"task_id": parent.pk, "image": parent.image},
            format="json",
            **bearer(world.node_b),
        ).status_code
        == 200
    )


def test_a_subtask_stays_in_the_study_of_its_task(api, world):
    """A task run in a study of A alone: its algorithm reaches no organization outside that study, whether
    its subtask names another study or none (then it is in its task's study, as the official algorithm
    client names it)."""
    study = make_study(world.collab_ab, world.org_a)
    parent = make_task(
        world.collab_ab, world.org_a, world.org_a, init_user=make_user(world.org_a), study=study
    )
    headers = container_headers_from(api, world.node_a, parent)
    to_a, to_b = ([{"id": org.pk, "input": plain()}] for org in (world.org_a, world.org_b))
    wider = make_study(world.collab_ab, world.org_a, world.org_b)
    refused = {
        wider.pk: f"A subtask stays in the study of its task (id={study.pk})!",
        None: f"Organization(s) [{world.org_b.pk}] are not part of study id={study.pk}!",
    }
    for study_id, message in refused.items():
        body = _subtask(world, parent, organizations=to_b, **({"study_id": study_id} if study_id else {}))
        response = api.post("/api/task", body, format="json", **headers)
        assert (response.status_code, response.json()) == (400, {"msg": message})
    assert Task.objects.count() == 1
    for named in ({"study_id": study.pk}, {}):
        response = api.post(
            "/api/task", _subtask(world, parent, organizations=to_a, **named), format="json", **headers
        )
        assert response.status_code == 201, response.json()
        assert Task.objects.get(pk=response.json()["id"]).study_id == study.pk


def test_no_subtask_for_an_organization_whose_node_left(api, world, parent):
    """A subtask outside a study is checked by its write's own statement: an organization of the
    collaboration without its node there is refused as when the collaboration is read first."""
    headers = container_headers_from(api, world.node_a, parent)
    world.node_b.delete()
    response = api.post("/api/task", _subtask(world, parent), format="json", **headers)
    assert response.status_code == 400, response.json()
    assert response.json()["msg"] == (
        "Cannot create this task because there are no nodes for the following organization(s) in "
        f"collaboration id={world.collab_ab.pk}: [{world.org_b.pk}]"
    )
    assert Task.objects.count() == 1


@pytest.mark.parametrize("encrypted", [True, False])
def test_no_subtask_whose_input_does_not_match_the_collaborations_encryption(api, world, parent, encrypted):
    headers = container_headers_from(api, world.node_a, parent)
    world.collab_ab.encrypted = encrypted
    world.collab_ab.save(update_fields=["encrypted"])
    entry = {"id": world.org_b.pk, "input": plain() if encrypted else ENCRYPTED_INPUT}
    response = api.post("/api/task", _subtask(world, parent, organizations=[entry]), format="json", **headers)
    assert response.status_code == 400, response.json()
    expected = "requires encryption" if encrypted else "is not readable"
    assert expected in response.json()["msg"]
    assert Task.objects.count() == 1
