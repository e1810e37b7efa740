"""The related rows a page of the admin site lists (a collaboration's nodes) are those the viewer may view:
a user who views collaboration AB but no node must not read the names, organizations and status of AB's
nodes there, which ``GET /api/node`` refuses them."""

from __future__ import annotations

import pytest

from accounts.models import Rule
from tests.admin.browser import Browser
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _rules(*triples: tuple[str, str, str]) -> list[Rule]:
    return [Rule.objects.get(name=name, scope=scope, operation=op) for name, scope, op in triples]


# A user of A who views its collaborations and edits its organization (so may use the admin site), no node.
COLLABORATION_VIEWER = (("collaboration", "ORGANIZATION", "VIEW"), ("organization", "ORGANIZATION", "EDIT"))


@pytest.mark.parametrize(
    ("roles", "rules", "lists_nodes"),
    [
        (("Organization Admin",), (), True),  # views the nodes of its collaborations
        ((), COLLABORATION_VIEWER, False),
    ],
)
def test_a_collaborations_page_lists_the_nodes_the_viewer_may_view(world, roles, rules, lists_nodes):
    viewer = make_user(world.org_a, *roles, rules=_rules(*rules))
    page = Browser(viewer.username).get(f"/admin/collaborations/collaboration/{world.collab_ab.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert (world.node_a.name in text, world.node_b.name in text) == (lists_nodes, lists_nodes)
