"""Writes in the admin are the API's writes: the same service, checks, database effect and audit record.

Each case runs an action once through the admin (logged in with the login form, posting the page's
form) and once through the API, from the same database state, and compares what each left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.db.models import Model

from accounts.catalogue import COL_ADMIN, ORG_ADMIN
from accounts.models import AuditEntry, Rule
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from nodes.models import Node
from tests.admin.browser import Browser, audit_trail, last_audit_id
from tests.factories import bearer, make_collab, make_org, make_study, make_user

pytestmark = pytest.mark.django_db


@dataclass
class Scene:
    world: object
    browser: Browser
    api: object
    headers: dict
    x: Collaboration  # A and B, a study with both
    study: Study
    store: AlgorithmStore


@pytest.fixture
def scene(world, api) -> Scene:
    user = make_user(world.org_a, COL_ADMIN, username="col_admin_a")
    x = make_collab(world.org_a, world.org_b, name="X")
    study = make_study(x, world.org_a, world.org_b, name="S")
    store = AlgorithmStore.objects.create(name="store", url="https://store.example.org/api", collaboration=x)
    return Scene(world, Browser("col_admin_a"), api, bearer(user), x, study, store)


def state() -> dict:
    """What the actions below may change."""
    return {
        "collaborations": sorted(Collaboration.objects.values_list("pk", "name", "encrypted")),
        "members": sorted(
            Collaboration.organizations.through.objects.values_list("collaboration", "organization")
        ),
        "studies": sorted(Study.objects.values_list("name", "collaboration")),
        "study_members": sorted(
            Study.organizations.through.objects.values_list("study__name", "organization")
        ),
        "nodes": sorted(Node.objects.values_list("name", "organization", "collaboration", "status", "ip")),
        "stores": sorted(AlgorithmStore.objects.values_list("name", "url", "collaboration")),
        "organizations": sorted(Organization.objects.values_list("pk", "name", "domain", "country")),
    }


def outcome(action: Callable[[], object]) -> tuple:
    """The database change and audit records of ``action``, which is then undone."""
    start, keys = last_audit_id(), dict(Node.objects.values_list("name", "api_key_hash"))
    savepoint = transaction.savepoint()
    response = action()
    assert response.status_code in (200, 201, 302), (response.status_code, response.content[:1500])
    new_keys = sorted(
        name for name, digest in Node.objects.values_list("name", "api_key_hash") if keys.get(name) != digest
    )
    # Rows created by the action get new ids each time: compare them by what they are.
    trail = [row[:4] + row[5:] if row[2].endswith(".create") else row for row in audit_trail(start)]
    result = {**state(), "new_keys": new_keys}, trail
    transaction.savepoint_rollback(savepoint)
    return result


def _change(model: str, pk: int) -> str:
    return f"/admin/{model}/{pk}/change/"


Through = tuple[Callable[[Scene], object], Callable[[Scene], object]]  # the admin's way, the API's


def _edit(model: str, row: Callable[[Scene], Model], changes: dict) -> Through:
    """The same ``changes`` to ``row`` in its admin change form and with ``PATCH /api/<model>/<id>``."""
    endpoint = f"/api/{model.split('/')[1]}"
    return (
        lambda s: s.browser.submit(_change(model, row(s).pk), changes),
        lambda s: s.api.patch(f"{endpoint}/{row(s).pk}", changes, format="json", **s.headers),
    )


CASES: dict[str, Through] = {
    "remove a member": (
        lambda s: s.browser.submit(
            _change("collaborations/collaboration", s.x.pk), {"organizations": [s.world.org_a.pk]}
        ),
        lambda s: s.api.delete(
            f"/api/collaboration/{s.x.pk}/organization", {"id": s.world.org_b.pk}, format="json", **s.headers
        ),
    ),
    "rename a collaboration": _edit("collaborations/collaboration", lambda s: s.x, {"name": "Y"}),
    "create a study": (
        lambda s: s.browser.submit(
            "/admin/collaborations/study/add/",
            {"name": "T", "collaboration": s.x.pk, "organizations": [s.world.org_a.pk]},
        ),
        lambda s: s.api.post(
            "/api/study",
            {"name": "T", "collaboration_id": s.x.pk, "organization_ids": [s.world.org_a.pk]},
            format="json",
            **s.headers,
        ),
    ),
    "change a study": (
        lambda s: s.browser.submit(
            _change("collaborations/study", s.study.pk), {"name": "S2", "organizations": [s.world.org_b.pk]}
        ),
        lambda s: s.api.patch(
            f"/api/study/{s.study.pk}",
            {"name": "S2", "organization_ids": [s.world.org_b.pk]},
            format="json",
            **s.headers,
        ),
    ),
    "delete a study": (
        lambda s: s.browser.submit(f"/admin/collaborations/study/{s.study.pk}/delete/", {"post": "yes"}),
        lambda s: s.api.delete(f"/api/study/{s.study.pk}", **s.headers),
    ),
    "create a node": (
        lambda s: s.browser.submit(
            "/admin/nodes/node/add/", {"organization": s.world.org_a.pk, "collaboration": s.x.pk}
        ),
        lambda s: s.api.post("/api/node", {"collaboration_id": s.x.pk}, format="json", **s.headers),
    ),
    "change a node": _edit("nodes/node", lambda s: s.world.node_a, {"name": "renamed", "ip": "10.0.0.1"}),
    "delete a node": (
        lambda s: s.browser.submit(f"/admin/nodes/node/{s.world.node_b.pk}/delete/", {"post": "yes"}),
        lambda s: s.api.delete(f"/api/node/{s.world.node_b.pk}", **s.headers),
    ),
    "new API key": (
        lambda s: s.browser.post(
            "/admin/nodes/node/", {"action": "reset_api_keys", "_selected_action": [s.world.node_a.pk]}
        ),
        lambda s: s.api.post("/api/recover/node", {"id": s.world.node_a.pk}, format="json", **s.headers),
    ),
    "change an organization": _edit(
        "collaborations/organization", lambda s: s.world.org_b, {"name": "B2", "country": "NL"}
    ),
    "rename a store link": _edit("collaborations/algorithmstore", lambda s: s.store, {"name": "renamed"}),
}


@pytest.mark.parametrize("case", CASES)
def test_an_admin_write_is_the_apis_write(scene, case):
    through_admin, through_api = CASES[case]
    before = state()
    by_admin = outcome(lambda: through_admin(scene))
    by_api = outcome(lambda: through_api(scene))
    assert by_admin[0] != {**before, "new_keys": []}, "the admin changed nothing"
    assert by_admin == by_api


def test_a_removed_member_leaves_the_studies_of_the_collaboration(scene):
    world = scene.world
    response = scene.browser.submit(
        _change("collaborations/collaboration", scene.x.pk), {"organizations": [world.org_a.pk]}
    )
    assert response.status_code == 302
    assert list(scene.study.organizations.values_list("pk", flat=True)) == [world.org_a.pk]
    entry = AuditEntry.objects.get(action="collaboration.edit")
    assert entry.data == {"removed_organization": world.org_b.pk}


def _refused(response, before: dict, audit_start: int) -> None:
    assert response.status_code in (200, 302, 403), response.status_code
    if response.status_code == 200:
        assert b"errornote" in response.content or b"errorlist" in response.content
    assert state() == before
    assert audit_trail(audit_start) == []


@pytest.fixture
def editor(world) -> Browser:
    """A collaboration editor who sees only its own organization."""
    rules = Rule.objects.filter(
        name__in=["collaboration", "organization"], scope="ORGANIZATION", operation="VIEW"
    ) | Rule.objects.filter(name__in=["collaboration", "user"], scope="COLLABORATION", operation="EDIT")
    make_user(world.org_a, username="editor", rules=list(rules))
    return Browser("editor")


def test_members_the_admin_cannot_see_stay(world, editor):
    response = editor.submit(_change("collaborations/collaboration", world.collab_ab.pk), {"name": "AB2"})
    assert response.status_code == 302
    assert set(world.collab_ab.organizations.values_list("pk", flat=True)) == {world.org_a.pk, world.org_b.pk}
    assert Collaboration.objects.get(pk=world.collab_ab.pk).name == "AB2"


def test_members_are_only_organizations_the_admin_can_see(world, editor):
    """It cannot name an organization it does not see."""
    hidden = make_org("Hidden")
    browser = editor
    page = browser.get(_change("collaborations/collaboration", world.collab_ab.pk)).content.decode()
    assert "Hidden" not in page
    before, start = state(), last_audit_id()
    response = browser.submit(
        _change("collaborations/collaboration", world.collab_ab.pk),
        {"organizations": [world.org_a.pk, world.org_b.pk, hidden.pk]},
    )
    _refused(response, before, start)


@pytest.mark.parametrize(
    ("role", "path", "fields"),
    [
        # Not its collaboration: the admin answers as for a missing row.
        (
            COL_ADMIN,
            "collaborations/collaboration/{collab_c}",
            {"name": "taken", "organizations": ["{org_a}"]},
        ),
        # Another organization taken in: only a global editor of collaborations may.
        (
            COL_ADMIN,
            "collaborations/collaboration/{collab_ab}",
            {"organizations": ["{org_a}", "{org_b}", "{org_c}"]},
        ),
        # Not allowed to edit collaborations at all.
        (ORG_ADMIN, "collaborations/collaboration/{collab_ab}", {"organizations": ["{org_a}", "{org_c}"]}),
        # A node for another organization, or in a collaboration its organization is not in.
        (ORG_ADMIN, "nodes/node/add", {"organization": "{org_b}", "collaboration": "{collab_ab}"}),
        (COL_ADMIN, "nodes/node/add", {"organization": "{org_a}", "collaboration": "{collab_c}"}),
        (COL_ADMIN, "nodes/node/add", {"organization": "{org_c}", "collaboration": "{collab_ab}"}),
        # A second node of organization A in collaboration AB.
        (ORG_ADMIN, "nodes/node/add", {"organization": "{org_a}", "collaboration": "{collab_ab}"}),
        # Not an address, which the API refuses as well.
        (ORG_ADMIN, "nodes/node/{node_a}", {"ip": "somewhere"}),
        # Studies of another collaboration, or with organizations outside the collaboration.
        (COL_ADMIN, "collaborations/study/add", {"name": "t", "collaboration": "{collab_c}"}),
        (
            COL_ADMIN,
            "collaborations/study/add",
            {"name": "t", "collaboration": "{collab_ab}", "organizations": ["{org_c}"]},
        ),
        # Another organization.
        (ORG_ADMIN, "collaborations/organization/{org_b}", {"name": "mine now"}),
    ],
)
def test_an_admin_write_beyond_the_rules_is_refused(world, role, path, fields):
    make_user(world.org_a, role, username="admin_a")
    browser = Browser("admin_a")
    ids = {
        "org_a": world.org_a.pk, "org_b": world.org_b.pk, "org_c": world.org_c.pk,
        "collab_ab": world.collab_ab.pk, "collab_c": world.collab_c.pk, "node_a": world.node_a.pk,
    }  # fmt: skip
    path = f"/admin/{path.format(**ids)}/" + ("" if path.endswith("add") else "change/")

    def filled(value):
        return [filled(v) for v in value] if isinstance(value, list) else value.format(**ids)

    data = {key: filled(value) for key, value in fields.items()}
    before, start = state(), last_audit_id()
    page = browser.get(path)
    if page.status_code == 200 and b'name="csrfmiddlewaretoken"' in page.content:
        response = browser.submit(path, data)
    else:  # the page is not shown: post the form anyway
        token = browser.client.cookies["csrftoken"].value
        response = browser.client.post(path, {**data, "csrfmiddlewaretoken": token})
    _refused(response, before, start)


def test_an_organization_scope_study_editor_cannot_change_the_members(world):
    """Organization-scope study edit renames a study; its members need collaboration scope, as in the API."""
    study = make_study(world.collab_ab, world.org_a, world.org_b, name="S")
    rule = Rule.objects.get(name="study", scope="ORGANIZATION", operation="EDIT")
    make_user(world.org_a, ORG_ADMIN, username="study_editor", rules=[rule])
    browser = Browser("study_editor")
    before, start = state(), last_audit_id()
    response = browser.submit(_change("collaborations/study", study.pk), {"organizations": [world.org_a.pk]})
    _refused(response, before, start)
    renamed = browser.submit(_change("collaborations/study", study.pk), {"name": "S2"})
    assert renamed.status_code == 302
    assert Study.objects.get(pk=study.pk).name == "S2"
