"""The admin's autocomplete answers page through the rows the rule engine shows in a stable order: an
unordered page would show rows twice or never."""

from __future__ import annotations

import pytest

from accounts.catalogue import ROOT
from tests.admin.browser import Browser
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ("accounts.user", "organization"),
        ("accounts.user", "roles"),
        ("collaborations.study", "collaboration"),
        ("nodes.node", "collaboration"),
        ("nodes.nodeconfig", "node"),
    ],
)
def test_autocomplete_pages_in_primary_key_order(world, source, field):
    make_user(world.org_a, ROOT, username="root_a")
    app_label, model_name = source.split(".")
    params = {"app_label": app_label, "model_name": model_name, "field_name": field, "term": ""}
    response = Browser("root_a").get("/admin/autocomplete/", params)
    assert response.status_code == 200, response.content[:300]
    ids = [int(row["id"]) for row in response.json()["results"]]
    assert ids and ids == sorted(ids)
