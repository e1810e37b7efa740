"""JSON bodies nested deeper than any request of the API needs are a 400, not a server error."""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from collaborations.models import Organization
from tests.factories import bearer, make_org, make_user
from vantage6.nesting import TooDeep, loads


def _nested(depth: int) -> str:
    return '{"name": ' + "[" * depth + "]" * depth + "}"


@pytest.fixture
def root(db):  # noqa: ARG001 - needs the database
    return make_user(make_org("root-org"), "Root")


@pytest.mark.parametrize("depth", [65, 900, 5000, 200_000])
@pytest.mark.parametrize("path", ["/api/token/user", "/api/organization", "/api/user", "/api/task"])
def test_too_deep_nesting_is_a_400(api, root, path, depth):
    api.raise_request_exception = False
    organizations, users = Organization.objects.count(), User.objects.count()
    response = api.generic("POST", path, _nested(depth), content_type="application/json", **bearer(root))
    assert response.status_code == 400, response.content
    assert response.json()["msg"] == "Request body is incorrect"
    assert "nested" in json.dumps(response.json()["errors"])
    assert (Organization.objects.count(), User.objects.count()) == (organizations, users)


def test_ordinary_nesting_is_read(api, root):
    body = {"name": "nested-ok", "databases": [{"label": "x", "parameters": {"a": {"b": [1, [2, [3]]]}}}]}
    response = api.post("/api/organization", body, format="json", **bearer(root))
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ("[" * 64 + "]" * 64, False),
        ("[" * 65 + "]" * 65, True),
        ('{"a":' * 40 + "[" * 25 + "]" * 25 + "}" * 40, True),
        ('{"a":' * 40 + "[" * 24 + "]" * 24 + "}" * 40, False),
        ('["' + "[{" * 500 + '", {"b": "}]"}]', False),  # brackets in strings nest nothing
        ('["[[[[", ' + "[" * 63 + "]" * 63 + "]", False),
        ('["[[[[", ' + "[" * 64 + "]" * 64 + "]", True),
    ],
)
def test_nesting_is_bounded_by_its_depth_whatever_the_brackets_in_its_strings(text, deep):
    if deep:
        with pytest.raises(TooDeep):
            loads(text)
    else:
        assert loads(text) == json.loads(text)
