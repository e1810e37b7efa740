"""The OpenAPI document against the server's own gate: the tokens each operation declares are the
ones it takes.

Every operation is called with a user's, a node's and a container's token and with none: a kind of
token the document leaves out must be refused by the client-type gate, a declared one must get past
it, and a public operation must not ask for a token.
"""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import bearer, make_task, make_user
from tests.tasks.conftest import container_identity

SCHEMES = {"userToken": "user", "nodeToken": "node", "containerToken": "container"}
# Root last: its call may delete the node or the task the other tokens belong to.
KINDS = ("container", "node", "user")
DOCUMENT = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]


def _declared(operation: dict) -> set[str]:
    return {SCHEMES.get(name, name) for requirement in operation.get("security", []) for name in requirement}


def _url(path: str) -> str:
    return path.replace("{uuid}", "0" * 32).replace("{id}", "1").replace("{rule_id}", "1")


@pytest.fixture
def tokens(world) -> dict[str, dict]:
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    return {
        "user": bearer(make_user(world.org_a, "Root")),
        "node": bearer(world.node_a),
        "container": bearer(container_identity(task, world.node_a)),
    }


def test_every_operation_declares_its_tokens_or_none():
    for method, path, operation in OPERATIONS:
        declared = _declared(operation)
        assert declared <= {*KINDS, "refreshToken"}, (method, path, declared)
        assert declared or "security" not in operation, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_the_declared_tokens_are_the_ones_the_operation_takes(api, tokens, method, path, operation):
    declared = _declared(operation)
    call = getattr(api, method.lower())
    if declared == {"refreshToken"}:  # no access token of any kind
        for kind in KINDS:
            assert call(_url(path), {}, format="json", **tokens[kind]).status_code in (401, 422), kind
        return
    for kind in KINDS:
        body = call(_url(path), {}, format="json", **tokens[kind])
        refused = body.status_code == 401 and body.json() == {
            "msg": f"This endpoint is not available to {kind}s"
        }
        if declared:
            assert refused == (kind not in declared), (kind, body.status_code, body.content[:200])
    anonymous = call(_url(path), {}, format="json")
    missing = anonymous.status_code == 401 and anonymous.json() == {"msg": "Missing Authorization Header"}
    assert missing == bool(declared), (anonymous.status_code, anonymous.content[:200])
