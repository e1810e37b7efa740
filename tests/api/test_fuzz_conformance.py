"""What a schema fuzzer checks beyond server errors, as found by running one against a live server with
the tokens of several identities: each answer is the one the document declares for its operation."""

from __future__ import annotations

import json
import re
import time

import jsonschema
import jwt
import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator

from tests.factories import bearer, make_org, make_task, make_user
from tests.tasks.conftest import container_identity

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


# What a fuzzer sends as a query parameter's negative case, by the type the document gives it: no value,
# and text that is not of that type. A value the document does not allow is a 400, not a filter left out.
NOT_OF_TYPE = {
    "integer": ["", " 1", "1_000", "\uff12", "1.0", "null"],
    "boolean": ["", "null", "yes please"],
    "date": ["", "2020-13-01", "null"],
}
QUERIES = [
    (path, parameter["name"], kind)
    for path, item in DOCUMENT["paths"].items()
    if "get" in item and "{" not in path
    for parameter in item["get"].get("parameters", [])
    if parameter["in"] == "query"
    and (kind := parameter["schema"].get("format", parameter["schema"].get("type"))) in NOT_OF_TYPE
]


@pytest.mark.parametrize(("path", "name", "kind"), QUERIES, ids=[f"{p} {n}" for p, n, _ in QUERIES])
def test_a_query_value_the_document_does_not_allow_is_a_400(api, db, path, name, kind):  # noqa: ARG001
    api.raise_request_exception = False
    root = bearer(make_user(make_org("root-org"), "Root"))
    failures = []
    for value in NOT_OF_TYPE[kind]:
        response = api.get(path, {name: value}, **root)
        if response.status_code != 400:
            failures.append(f"{name}={value!r}: {response.status_code} {response.content[:80]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", ["/api/schema", "/api/docs", "/api/redoc"])
@pytest.mark.parametrize("token", ["x", "a.b.c", "expired", "container"])
def test_the_public_document_ignores_the_token_sent_along(api, world, path, token):
    """A fuzzer (or a client) sends its token with every request, the schema's too: the public document
    is served whatever the token, as without one."""
    if token == "container":
        task = make_task(world.collab_ab, world.org_a, world.org_a)
        token = bearer(container_identity(task, world.node_a))["HTTP_AUTHORIZATION"].split()[1]
    elif token == "expired":
        valid = bearer(world.node_a)["HTTP_AUTHORIZATION"].split()[1]
        claims = jwt.decode(
            valid, settings.JWT_SECRET_KEY, algorithms=["HS256"], options={"verify_sub": False}
        )
        token = jwt.encode(
            {**claims, "exp": int(time.time()) - 60}, settings.JWT_SECRET_KEY, algorithm="HS256"
        )
    response = api.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content[:200]


def _body_properties(operation: dict) -> dict[str, dict]:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if ref := schema.get("$ref"):
        schema = DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema.get("properties", {})


# A value of another JSON type than the document gives a text or boolean field of a body.
OTHER_TYPE = {"string": [0, 1.5, True], "boolean": [0, 1, "true", "no"]}
TYPED_FIELDS = [
    (method, path, name, kind)
    for path, item in DOCUMENT["paths"].items()
    if "{" not in path
    for method, operation in item.items()
    if method in ("post", "patch")
    for name, field in _body_properties(operation).items()
    if (kind := field.get("type")) in OTHER_TYPE and not field.get("readOnly")
]


@pytest.mark.parametrize(
    ("method", "path", "name", "kind"), TYPED_FIELDS, ids=[f"{m} {p} {n}" for m, p, n, _ in TYPED_FIELDS]
)
def test_a_body_value_of_another_type_is_refused(api, db, method, path, name, kind):  # noqa: ARG001
    api.raise_request_exception = False
    root = bearer(make_user(make_org("root-org"), "Root"))
    failures = []
    for value in OTHER_TYPE[kind]:
        response = api.generic(method.upper(), path, json.dumps({name: value}), "application/json", **root)
        if response.status_code in (401, 403):
            continue  # an endpoint of other callers (a node's, a container's)
        answer = response.json()
        # The role endpoints answer the errors in ``msg``, as vantage6 does.
        errors = answer.get("errors") or answer["msg"] if response.status_code == 400 else {}
        if not isinstance(errors, dict) or name not in errors:
            failures.append(f"{name}={value!r}: {response.status_code} {response.content[:120]!r}")
    assert not failures, "\n".join(failures)


def test_an_audit_entry_is_what_the_document_says(api, db):  # noqa: ARG001
    """Every time the API shows is naive UTC (as vantage6's); the audit entry's was documented as an
    RFC 3339 time, which needs an offset, so a fuzzer found each answer with an entry not conforming."""
    root = bearer(make_user(make_org("root-org"), "Root"))
    assert api.post("/api/organization", {"name": "audited"}, format="json", **root).status_code == 201
    schema = {**DOCUMENT["components"]["schemas"]["AuditEntry"], "components": DOCUMENT["components"]}
    checker = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    entries = api.get("/api/audit", **root).json()["data"]
    assert entries
    for entry in [*entries, api.get(f"/api/audit/{entries[0]['id']}", **root).json()]:
        assert not [error.message for error in checker.iter_errors(entry)]
        # An RFC 3339 time (jsonschema checks the format only with a package this suite does without).
        times = [name for name, field in schema["properties"].items() if field.get("format") == "date-time"]
        assert not [
            name for name in times if entry[name] and not re.search(r"(Z|[+-]\d\d:\d\d)$", entry[name])
        ]
