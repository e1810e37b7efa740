"""What a schema fuzzer checks beyond server errors, as found by running one against a live server with
the tokens of several identities: each answer is the one the document declares for its operation."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import bearer

DOCUMENT = SchemaGenerator().get_schema(request=None, public=True)
PATHS = list(DOCUMENT["paths"].items())
UNDECLARED = ("get", "post", "put", "patch", "delete", "trace")


@pytest.mark.parametrize(("path", "item"), PATHS, ids=[path for path, _ in PATHS])
def test_an_undeclared_method_is_a_405_whoever_asks(api, world, path, item):
    """An undeclared method is refused as such (405 with ``Allow``) before the token is looked at: not a
    401 for no token, nor what an endpoint's authentication says about a token of the wrong kind (the
    422 of ``/api/token/refresh`` for an access token)."""
    api.raise_request_exception = False
    url = re.sub(r"\{[^}]+\}", "1", path)
    failures = []
    for caller in ({}, bearer(world.node_a)):
        for method in UNDECLARED:
            if method in item:
                continue
            response = api.generic(method.upper(), url, b"{}", "application/json", **caller)
            if response.status_code != 405 or "Allow" not in response:
                failures.append(
                    f"{method} {url} {bool(caller)}: {response.status_code} {response.content[:80]!r}"
                )
    assert not failures, "\n".join(failures[:20])
