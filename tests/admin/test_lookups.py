"""Admin changelists filter only on their declared filters: any other lookup is refused.

Otherwise the row count answers questions about fields the page never shows: a password hash or a
node's key digest is recovered one character at a time with ``?password__startswith=...``.
"""

from __future__ import annotations

import pytest
from django.contrib import admin

from accounts.catalogue import ORG_ADMIN, ROOT, VIEWER
from accounts.models import User
from tests.admin.browser import Browser
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_admin(world) -> Browser:
    make_user(world.org_a, ORG_ADMIN, username="admin_a")
    make_user(world.org_a, VIEWER, username="colleague")
    return Browser("admin_a")


@pytest.mark.parametrize(
    ("page", "lookup", "guess"),
    [
        ("/admin/accounts/user/", "password__startswith", "{password}"),
        ("/admin/accounts/user/", "password__gte", "$"),
        ("/admin/accounts/user/", "otp_secret__isnull", "True"),
        ("/admin/accounts/user/", "failed_login_attempts__lt", "1"),
        ("/admin/accounts/user/", "organization__users__password__startswith", "$2"),
        ("/admin/accounts/user/", "roles__users__otp_secret__isnull", "True"),
        ("/admin/nodes/node/", "api_key_hash__startswith", "{key_digest}"),
        ("/admin/nodes/node/", "organization__users__password__gte", "$"),
        ("/admin/collaborations/organization/", "users__password__startswith", "$2"),
        ("/admin/collaborations/organization/", "public_key_bytes__isnull", "False"),
        ("/admin/accounts/role/", "users__password__startswith", "$2"),
        ("/admin/collaborations/collaboration/", "nodes__api_key_hash__gte", "0"),
    ],
)
def test_a_lookup_outside_the_declared_filters_is_refused(world, org_admin, page, lookup, guess):
    secrets = {
        "password": User.objects.get(username="colleague").password[:4],
        "key_digest": world.node_a.api_key_hash[:2],
    }
    right = org_admin.get(page, {lookup: guess.format(**secrets)})
    assert right.status_code == 400, (right.status_code, right.content[:300])
    assert b"colleague" not in right.content and b"node-a" not in right.content
    # The same answer whatever the guess: nothing to learn from.
    wrong = org_admin.get(page, {lookup: "~"})
    assert wrong.status_code == right.status_code and wrong.content == right.content


@pytest.mark.parametrize(
    ("page", "params", "shown"),
    [
        ("/admin/accounts/user/", {"organization__id__exact": "{org_a}"}, "colleague"),
        ("/admin/accounts/user/", {"q": "colleague"}, "colleague"),
        ("/admin/accounts/role/", {"is_default_role__exact": "1"}, "Viewer"),
        ("/admin/accounts/role/", {"organization__isnull": "True"}, "Viewer"),
        ("/admin/nodes/node/", {"status__exact": "offline"}, "node-a"),
        ("/admin/nodes/node/", {"collaboration__id__exact": "{collab_ab}"}, "node-b"),
        ("/admin/accounts/rule/", {"scope__exact": "GLOBAL"}, "Global"),
    ],
)
def test_the_declared_filters_and_the_search_still_work(world, org_admin, page, params, shown):
    ids = {"org_a": world.org_a.pk, "collab_ab": world.collab_ab.pk}
    response = org_admin.get(page, {key: value.format(**ids) for key, value in params.items()})
    assert response.status_code == 200
    assert shown.lower() in response.content.decode().lower()


def test_a_bad_value_of_a_declared_filter_is_the_admins_usual_error(org_admin):
    response = org_admin.get("/admin/accounts/user/", {"organization__id__exact": "x"})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")


def test_every_admin_page_refuses_undeclared_lookups(world):
    make_user(world.org_a, ROOT, username="root_a")
    browser = Browser("root_a")
    for model in admin.site._registry:
        page = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert browser.get(page).status_code == 200, page
        # The primary key is a field of every model, and no page declares a filter on it.
        assert browser.get(page, {"pk__gte": "0"}).status_code == 400, page
