"""Changing a role's rules changes the rights of everyone holding it: an editor of the role may do so
only to holders whose rights it could change directly (``PATCH /api/user/<id>`` roles/rules), or
a role edit would take rights from, or give them to, users the editor may not edit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from accounts.models import Role, Rule, User
from accounts.permissions import rules_of_user
from tests.factories import bearer, make_collab, make_org, make_user

pytestmark = pytest.mark.django_db


def _rule(name: str, scope: str, operation: str) -> Rule:
    return Rule.objects.get(name=name, scope=scope, operation=operation)


@dataclass
class Scene:
    editor: User
    holder: User
    role: Role
    granted: Rule  # held by the editor, not in the role


def _role(org, *rules: Rule) -> Role:
    role = Role.objects.create(name=f"team of {org.name}", organization=org)
    role.rules.set(rules)
    return role


def _role_editor(world, scope: str, holders_organization) -> Scene:
    """A user of A who may edit and delete roles of ``scope`` but not the users holding them, over a role of
    ``holders_organization`` held by a Viewer there."""
    view, create = _rule("task", "COLLABORATION", "VIEW"), _rule("task", "COLLABORATION", "CREATE")
    editor = make_user(
        world.org_a, rules=[_rule("role", scope, op) for op in ("VIEW", "EDIT", "DELETE")] + [view, create]
    )
    role = _role(holders_organization, view)
    holder = make_user(holders_organization, "Viewer")
    holder.roles.add(role)
    return Scene(editor, holder, role, create)


def _collaboration_role_editor(world) -> Scene:
    """A user of A editing the roles of its partner B (role rules of collaboration scope) without any
    right to edit B's users."""
    return _role_editor(world, "COLLABORATION", world.org_b)


def _organization_admin_over_a_stronger_colleague(world) -> Scene:
    """An Organization Admin editing a role of its organization held by a Collaboration Admin there,
    whom it may not edit (the colleague holds rules the admin does not)."""
    view = _rule("task", "COLLABORATION", "VIEW")
    editor = make_user(world.org_a, "Organization Admin")
    role = _role(world.org_a, view)
    holder = make_user(world.org_a, "Collaboration Admin")
    holder.roles.add(role)
    return Scene(editor, holder, role, _rule("event", "ORGANIZATION", "SEND"))


def _role_editor_without_user_rights(world) -> Scene:
    """A user who may edit its organization's roles but not its users."""
    return _role_editor(world, "ORGANIZATION", world.org_a)


def _collaboration_admin_over_a_partner_elsewhere(world) -> Scene:
    """A Collaboration Admin of A who may also edit and delete its partners' roles, over a user of B
    whose rules reach into a collaboration of B that A is not in."""
    make_collab(world.org_b, make_org())
    view = _rule("task", "COLLABORATION", "VIEW")
    editor = make_user(
        world.org_a,
        "Collaboration Admin",
        rules=[_rule("role", "COLLABORATION", op) for op in ("EDIT", "DELETE")],
    )
    role = _role(world.org_b, view)
    holder = make_user(world.org_b, "Viewer")
    holder.roles.add(role)
    return Scene(editor, holder, role, _rule("event", "ORGANIZATION", "SEND"))


SCENES = [
    _collaboration_role_editor,
    _collaboration_admin_over_a_partner_elsewhere,
    _organization_admin_over_a_stronger_colleague,
    _role_editor_without_user_rights,
]


def _edits(scene: Scene) -> list[tuple[str, str, dict]]:
    role = scene.role
    kept = list(role.rules.values_list("pk", flat=True))
    return [
        ("patch", f"/api/role/{role.pk}", {"rules": []}),
        ("patch", f"/api/role/{role.pk}", {"rules": [*kept, scene.granted.pk]}),
        ("post", f"/api/role/{role.pk}/rule/{scene.granted.pk}", {}),
        ("delete", f"/api/role/{role.pk}/rule/{kept[0]}", {}),
        ("delete", f"/api/role/{role.pk}?delete_dependents=true", {}),
    ]


@pytest.mark.parametrize("make_scene", SCENES, ids=lambda f: f.__name__.strip("_"))
def test_a_role_edit_changes_no_holder_the_editor_may_not_edit(api, world, make_scene):
    scene = make_scene(world)
    headers = bearer(scene.editor)
    # Directly, the editor may not change the holder's roles or rules.
    direct = api.patch(
        f"/api/user/{scene.holder.pk}", {"rules": [scene.granted.pk]}, format="json", **headers
    )
    assert direct.status_code == 401, direct.content
    before = rules_of_user(scene.holder.pk)

    for method, path, body in _edits(scene):
        response = getattr(api, method)(path, body, format="json", **headers)
        assert response.status_code == 401, (method, path, response.content)
        assert rules_of_user(scene.holder.pk) == before, (method, path)
    assert Role.objects.filter(pk=scene.role.pk).exists()


# Of a partner in collaborations the editor is not in, the role's rules are not the editor's to give at all.
@pytest.mark.parametrize(
    "make_scene",
    [s for s in SCENES if s is not _collaboration_admin_over_a_partner_elsewhere],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_role_nobody_else_holds_stays_the_editors_to_change(api, world, make_scene):
    scene = make_scene(world)
    scene.role.users.clear()
    scene.role.users.add(scene.editor)  # changing a role one holds oneself changes nobody else
    headers = bearer(scene.editor)
    for method, path, body in _edits(scene):
        response = getattr(api, method)(path, body, format="json", **headers)
        assert response.status_code in (200, 201), (method, path, response.content)
    assert not Role.objects.filter(pk=scene.role.pk).exists()


def test_an_organization_admin_still_edits_a_role_its_users_hold(api, world):
    """Holders the editor may edit directly do not stand in the way (as in vantage6)."""
    scene = _organization_admin_over_a_stronger_colleague(world)
    scene.holder.roles.set([Role.objects.get(name="Viewer"), scene.role])
    headers = bearer(scene.editor)
    for method, path, body in _edits(scene):
        response = getattr(api, method)(path, body, format="json", **headers)
        assert response.status_code in (200, 201), (method, path, response.content)
    assert set(scene.holder.roles.values_list("name", flat=True)) == {"Viewer"}


def test_renaming_a_role_with_its_rules_unchanged_changes_no_holder(api, world):
    scene = _collaboration_role_editor(world)
    kept = list(scene.role.rules.values_list("pk", flat=True))
    body = {"name": "renamed", "rules": kept}
    response = api.patch(f"/api/role/{scene.role.pk}", body, format="json", **bearer(scene.editor))
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "renamed"
