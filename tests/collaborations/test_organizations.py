"""/api/organization: list and filters, create, get, edit (public key rule), delete with dependents."""

from __future__ import annotations

import base64

import pytest

from accounts.models import AuditEntry, Authenticatable, Role, User
from collaborations.models import Collaboration, Organization
from nodes.models import Node
from tasks.models import Run, Task
from tests.collaborations.helpers import container_headers, headers_of, ids
from tests.factories import bearer, make_org, make_study, make_task, make_user
from tests.tasks.conftest import user_with

pytestmark = pytest.mark.django_db

PEM_B64 = base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----\n").decode()


def target(world, which: str) -> Organization:
    return {"own": world.org_a, "collaborating": world.org_b, "unrelated": world.org_c}[which]


@pytest.mark.parametrize("which,allowed", [("own", True), ("collaborating", False), ("unrelated", False)])
def test_node_sees_and_edits_only_as_its_role_allows(api, world, which, allowed):
    org = target(world, which)
    view = api.get(f"/api/organization/{org.pk}", **bearer(world.node_a))
    assert view.status_code == (200 if which != "unrelated" else 401)
    edit = api.patch(
        f"/api/organization/{org.pk}", {"public_key": PEM_B64}, format="json", **bearer(world.node_a)
    )
    assert edit.status_code == (200 if allowed else 401)


def test_container_may_read_but_not_edit(api, world):
    assert (
        api.get(f"/api/organization/{world.org_b.pk}", **container_headers(world.node_a)).status_code == 200
    )
    assert api.get("/api/organization", **container_headers(world.node_a)).status_code == 200
    patch = api.patch(
        f"/api/organization/{world.org_a.pk}",
        {"country": "x"},
        format="json",
        **container_headers(world.node_a),
    )
    assert patch.status_code == 401


# --- representation and list filters -----------------------------------------------------------------
def test_detail_representation(api, world):
    world.org_a.public_key_bytes = base64.b64decode(PEM_B64)
    world.org_a.save()
    body = api.get(f"/api/organization/{world.org_a.pk}", **headers_of(world.org_a, "Viewer")).json()
    pk = world.org_a.pk
    assert body == {
        "id": pk, "name": "A", "domain": "", "address1": "", "address2": None, "zipcode": "",
        "country": "", "public_key": PEM_B64,
        "collaborations": f"/api/collaboration?organization_id={pk}",
        "nodes": f"/api/node?organization_id={pk}", "users": f"/api/user?organization_id={pk}",
        "tasks": f"/api/task?init_org_id={pk}", "runs": f"/api/run?organization_id={pk}",
        "studies": f"/api/study?organization_id={pk}",
    }  # fmt: skip


def test_unknown_organization_is_a_404(api, world):
    response = api.get("/api/organization/999999", **headers_of(world.org_a, "Root"))
    assert response.status_code == 404
    assert "msg" in response.json()
    huge = api.get(f"/api/organization/{10**30}", **headers_of(world.org_a, "Root"))
    assert huge.status_code == 404


def test_list_filters(api, world):
    root = headers_of(world.org_a, "Root")
    make_org("Alpha", country="NL")
    make_org("Beta", country="BE")
    assert ids(api.get("/api/organization?name=Al%25", **root)) == [Organization.objects.get(name="Alpha").pk]
    assert ids(api.get("/api/organization?name=_", **root)) == [
        world.org_a.pk,
        world.org_b.pk,
        world.org_c.pk,
    ]
    assert ids(api.get("/api/organization?country=BE", **root)) == [Organization.objects.get(name="Beta").pk]
    by_collab = api.get(f"/api/organization?collaboration_id={world.collab_ab.pk}", **root)
    assert ids(by_collab) == [world.org_a.pk, world.org_b.pk]
    by_ids = api.get(f"/api/organization?ids={world.org_a.pk}&ids={world.org_c.pk}", **root)
    assert ids(by_ids) == [world.org_a.pk, world.org_c.pk]
    study = make_study(world.collab_ab, world.org_b)
    assert ids(api.get(f"/api/organization?study_id={study.pk}", **root)) == [world.org_b.pk]


def test_list_filters_are_gated(api, world):
    viewer = headers_of(world.org_a, "Viewer")
    assert api.get(f"/api/organization?collaboration_id={world.collab_ab.pk}", **viewer).status_code == 200
    assert api.get(f"/api/organization?collaboration_id={world.collab_c.pk}", **viewer).status_code == 401
    study_c = make_study(world.collab_c, world.org_c)
    assert api.get(f"/api/organization?study_id={study_c.pk}", **viewer).status_code == 401
    # a missing study is the same 401 as a hidden one
    assert api.get("/api/organization?study_id=99999", **viewer).status_code == 401
    assert api.get("/api/organization?collaboration_id=x", **viewer).status_code == 400
    assert api.get("/api/organization?ids=1,x", **viewer).status_code == 400


def test_list_without_any_view_rule_is_a_401(api, world):
    response = api.get("/api/organization", **bearer(make_user(world.org_a)))
    assert response.status_code == 401
    assert response.json() == {"msg": "You lack the permission to do that!"}


# --- create -----------------------------------------------------------------------------------------
def test_create_with_defaults_and_public_key(api, world):
    root = headers_of(world.org_a, "Root")
    response = api.post("/api/organization", {"name": "Z", "public_key": PEM_B64}, format="json", **root)
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("name", "domain", "address1", "address2", "zipcode", "country")} == {
        "name": "Z", "domain": "", "address1": "", "address2": None, "zipcode": "", "country": "",
    }  # fmt: skip
    assert body["public_key"] == PEM_B64
    org = Organization.objects.get(pk=body["id"])
    assert bytes(org.public_key_bytes) == base64.b64decode(PEM_B64)
    assert AuditEntry.objects.filter(action="organization.create", object_id=org.pk).exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "123"}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "ok", "country": "x" * 129}, "country"),
        ({"name": "ok", "public_key": "not base64!"}, "public_key"),
        ({"name": 5}, None),
    ],
)
def test_create_validation(api, world, body, field):
    response = api.post("/api/organization", body, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    if field:
        assert field in response.json()["errors"]
    assert not Organization.objects.filter(name="ok").exists()


@pytest.mark.parametrize("body", [[1, 2], "text", None, 5])
def test_create_with_a_body_that_is_not_an_object(api, world, body):
    response = api.post("/api/organization", body, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    assert response.json()["msg"] == "Request body is incorrect"


def test_create_duplicate_name(api, world):
    response = api.post("/api/organization", {"name": "A"}, format="json", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    assert "already exists" in response.json()["msg"]


# --- edit -------------------------------------------------------------------------------------------
def test_patch_fields_and_nulls_are_ignored(api, world):
    headers = headers_of(world.org_a, "Organization Admin")
    response = api.patch(
        f"/api/organization/{world.org_a.pk}",
        {"name": "A2", "domain": "a.org", "address2": None, "zipcode": None},
        format="json",
        **headers,
    )
    assert response.status_code == 200
    assert response.json()["name"] == "A2"
    assert response.json()["domain"] == "a.org"
    world.org_a.refresh_from_db()
    assert (world.org_a.name, world.org_a.zipcode) == ("A2", "")


def test_patch_duplicate_name_and_bad_values(api, world):
    root = headers_of(world.org_a, "Root")
    assert (
        api.patch(f"/api/organization/{world.org_a.pk}", {"name": "B"}, format="json", **root).status_code
        == 400
    )
    bad = api.patch(f"/api/organization/{world.org_a.pk}", {"public_key": "%%%"}, format="json", **root)
    assert bad.status_code == 400
    assert "public_key" in bad.json()["errors"]
    assert api.patch("/api/organization/99999", {"name": "Q"}, format="json", **root).status_code == 404


def test_public_key_only_by_members_of_the_organization(api, world):
    root = headers_of(world.org_a, "Root")
    other = api.patch(f"/api/organization/{world.org_b.pk}", {"public_key": PEM_B64}, format="json", **root)
    assert other.status_code == 401
    assert other.json()["msg"] == "You can only change the public key of your own organization!"
    world.org_b.refresh_from_db()
    assert world.org_b.public_key == ""
    own = api.patch(f"/api/organization/{world.org_a.pk}", {"public_key": PEM_B64}, format="json", **root)
    assert own.status_code == 200
    assert own.json()["public_key"] == PEM_B64
    # Root may still edit other fields of another organization.
    assert (
        api.patch(f"/api/organization/{world.org_b.pk}", {"country": "x"}, format="json", **root).status_code
        == 200
    )


# --- delete -----------------------------------------------------------------------------------------
def test_delete_own_organization_is_refused(api, world):
    response = api.delete(f"/api/organization/{world.org_a.pk}", **headers_of(world.org_a, "Root"))
    assert response.status_code == 400
    assert "own organization" in response.json()["msg"]


def test_delete_with_dependents(api, world):
    root_org = make_org("root-org")
    root = headers_of(root_org, "Root")
    study = make_study(world.collab_ab, world.org_a, world.org_b)
    user_b = make_user(world.org_b, "Viewer")
    role_b = Role.objects.create(name="b-role", organization=world.org_b)
    task = make_task(world.collab_ab, world.org_b, world.org_a, world.org_b)
    task_of_a = make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)

    refused = api.delete(f"/api/organization/{world.org_b.pk}", **root)
    assert refused.status_code == 400
    assert "delete_dependents" in refused.json()["msg"]
    assert Organization.objects.filter(pk=world.org_b.pk).exists()

    response = api.delete(f"/api/organization/{world.org_b.pk}?delete_dependents=true", **root)
    assert response.status_code == 200
    assert "msg" in response.json()
    assert not Organization.objects.filter(pk=world.org_b.pk).exists()
    assert not Node.objects.filter(pk=world.node_b.pk).exists()
    assert not Authenticatable.objects.filter(pk__in=[world.node_b.pk, user_b.pk]).exists()
    assert not User.objects.filter(pk=user_b.pk).exists()
    assert not Role.objects.filter(pk=role_b.pk).exists()
    assert not Task.objects.filter(pk=task.pk).exists()
    assert list(Run.objects.filter(task=task_of_a).values_list("organization_id", flat=True)) == [
        world.org_a.pk
    ]
    assert list(Collaboration.objects.get(pk=world.collab_ab.pk).organizations.all()) == [world.org_a]
    assert list(study.organizations.all()) == [world.org_a]


def test_delete_flag_counts_any_value_but_false_and_organization_without_dependents(api, world):
    root = headers_of(make_org("root-org"), "Root")
    empty = make_org("empty")
    assert api.delete(f"/api/organization/{empty.pk}", **root).status_code == 200
    response = api.delete(f"/api/organization/{world.org_c.pk}?delete_dependents=yes", **root)
    assert response.status_code == 200
    assert api.delete("/api/organization/99999", **root).status_code == 404


@pytest.mark.parametrize(
    ("specs", "own", "other", "missing"),
    [
        (("organization.glo.view", "collaboration.glo.view"), 200, 200, 200),
        (("organization.glo.view", "collaboration.org.view"), 200, 401, 401),
        (("organization.glo.view",), 200, 401, 401),
        (("organization.col.view", "collaboration.glo.view"), 200, 401, 401),
        (("organization.org.view", "collaboration.glo.view"), 401, 401, 401),
    ],
)
def test_the_collaboration_filter_reaches_what_both_rules_reach(api, world, specs, own, other, missing):
    """Members of the own collaborations at global or collaboration scope; of any collaboration (a
    missing one an empty list, as vantage6 answers) only who also sees every collaboration."""
    headers = bearer(user_with(world.org_a, *specs))
    answers = [
        api.get(f"/api/organization?collaboration_id={collaboration_id}", **headers)
        for collaboration_id in (world.collab_ab.pk, world.collab_c.pk, 99999)
    ]
    assert [answer.status_code for answer in answers] == [own, other, missing]
    if own == 200:
        assert ids(answers[0]) == [world.org_a.pk, world.org_b.pk]
    if missing == 200:
        assert ids(answers[1]) == [world.org_c.pk] and ids(answers[2]) == []
