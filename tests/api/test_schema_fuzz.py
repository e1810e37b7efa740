"""Schema fuzzing: requests generated from the OpenAPI document (``/api/schema``), sent as root and as
a node, and every answer checked against the document.

Bounded and repeatable: the document's examples, schemathesis' coverage cases (every boundary and
negative value the document defines) and a few derandomized fuzzed examples per operation, each
operation in its own rolled-back transaction. An answer fails when it is a server error, or when its
status, content type, headers or body are not what the document declares for that operation.

The cases are built when an operation's test runs (not at collection, where every worker would build
all of them), once per worker that runs the operation.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.feedback import NO_FEEDBACK
from schemathesis.pytest._test_builder import build_operation_test

from accounts.api import CONTAINER, NODE, USER
from accounts.catalogue import VIEWER
from accounts.models import Role, Rule
from tasks.models import Run
from tests.factories import PASSWORD, bearer, make_org, make_task, make_user
from tests.tasks.conftest import container_identity, plain
from vantage6.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema", application)
# The coverage phase for the callers the operation's client-type gate lets in; the others get the
# examples and fuzzing phases (see _past_the_gate).
WITHOUT_COVERAGE = copy.deepcopy(schema.config)
WITHOUT_COVERAGE.phases.update(phases=["examples", "fuzzing"])
SCHEMA_OPERATIONS = {result.ok().label: result.ok() for result in schema.get_all_operations()}
CALLER_CLIENT_TYPES = {"root": USER, "node": NODE, "container": CONTAINER}
SCHEMA_CALLERS = ["root", "node"]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NOT_CONFIGURED = 501


@pytest.fixture
def _connection_kept():
    """The application is called as a server would (not through Django's test client): the end of a
    request must not close the connection that holds the test's transaction."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


def _gate_clients(method: str, path: str) -> tuple[str, ...] | None:
    """The client types the view's gate (``accounts.api.ClientTypeGate``) lets in for the operation;
    None when it has no gate (anonymous endpoints) or the path does not resolve."""
    try:
        match = resolve(re.sub(r"\{[^}]+\}", "1", path))
    except Resolver404:
        return None
    view = getattr(match.func, "cls", None)
    if view is None or not hasattr(view, "clients"):
        return None
    action = (getattr(match.func, "actions", None) or {}).get(method.lower())
    return getattr(view, "action_clients", {}).get(action, view.clients)


def _past_the_gate(method: str, path: str, callers: list[str]) -> list[str]:
    """Those of ``callers`` whose client type the operation's gate lets in: all of them without a
    gate, root when it lets in none of them.

    Before the gate the same code meets every caller's request alike (routing, content negotiation,
    body parsing), and a refused caller's answer is the gate's 401 whatever the request: a refused
    caller's hostile or coverage cases check nothing that root's (or an admitted caller's) do not.
    Refused callers still send the examples and fuzzing phases, so their 401 is checked against the
    document."""
    clients = _gate_clients(method, path)
    if clients is None:
        return callers
    return [caller for caller in callers if CALLER_CLIENT_TYPES[caller] in clients] or ["root"]


@settings(
    max_examples=4,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def _answer_is_what_the_document_says(case, caller_headers: dict[str, str]) -> None:
    # The generated credentials (often none, or garbage) give way to the caller's: the fuzzing is
    # meant to get past authentication.
    case.headers = {**(case.headers or {}), **caller_headers}
    response = case.call()
    # 501 is the documented answer of a feature this server is not configured for (blob store, VPN).
    checks = (
        [c for c in CHECKS if c is not not_a_server_error]
        if response.status_code == NOT_CONFIGURED
        else CHECKS
    )
    case.validate_response(response, checks=checks, headers=caller_headers)


@functools.cache
def _operation_test(label: str, coverage: bool) -> Callable[..., None]:
    """The operation's Hypothesis test (its coverage cases are built here, once per worker)."""
    return build_operation_test(
        config=schema.config if coverage else WITHOUT_COVERAGE,
        operation=SCHEMA_OPERATIONS[label],
        test_func=_answer_is_what_the_document_says,
        given_kwargs={},
        feedback=NO_FEEDBACK,
    )


# The callers of an operation on one worker (--dist loadgroup): its cases are built once, not on each.
@pytest.mark.parametrize("caller", SCHEMA_CALLERS)
@pytest.mark.parametrize(
    "label",
    [
        pytest.param(label, marks=pytest.mark.xdist_group(f"schema-operation-{number}"), id=label)
        for number, label in enumerate(SCHEMA_OPERATIONS)
    ],
)
def test_every_answer_is_what_the_document_says(world, _connection_kept, label, caller):
    # A world with a task, so that lists and runs have rows.
    make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    identity = make_user(make_org("root-org"), "Root") if caller == "root" else world.node_a
    headers = {"Authorization": bearer(identity)["HTTP_AUTHORIZATION"]}
    method, path = label.split(" ", 1)
    coverage = caller in _past_the_gate(method, path, SCHEMA_CALLERS)
    _operation_test(label, coverage)(caller_headers=headers)


# --- hostile bodies ------------------------------------------------------------------------------------
# What a fuzzer's negative cases send to every write operation of the document: all fields of its body
# at once as each hostile value, each field alone as the likeliest of them, and whole bodies that are
# not the JSON object asked for. The answer must be a 4xx (or a success) with a JSON body, never a
# server error.
# The document as served (loaded above), not generated once more; a copy, which generation leaves alone.
DOCUMENT = copy.deepcopy(schema.raw_schema)
HOSTILE_VALUES = [
    None,
    -1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**40,
    1.5,
    1e308,
    True,
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 100_000,
    [],
    [None, "\x00"],
    {},
    {"a": {"b": [1, {"c": None}]}},
]
# Each field alone takes the values most likely to get past a check: a few, for every field is many.
FIELD_VALUES = [None, 2**63, 1.5, "a\x00b", "\ud800", [None], {"a": {"b": [1]}}]
HOSTILE_BODIES = [
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"[]", "application/json"),
    (b"[{}]", "application/json"),
    (b"0", "application/json"),
    (b'"text"', "application/json"),
    (b"{", "application/json"),
    (b'{"id": 1, "id": "1"}', "application/json"),
    (b'{"x": NaN, "y": Infinity, "z": -Infinity}', "application/json"),
    (b'{"x": 1e999}', "application/json"),
    (b'{"x": "\\ud800\\udc00\\udc00"}', "application/json"),
    (b"\xff\xfe{}", "application/json"),
    (b"{}", "application/json; charset=utf-16"),
    (b"{}", "application/json; charset=no-such-charset"),
    (b"{}", "text/plain"),
    (b"a=1&a=%00", "application/x-www-form-urlencoded"),
    (
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--\r\n",
        "multipart/form-data; boundary=b",
    ),
    (b"{}", "multipart/form-data"),
]
WRITES = [
    (method, path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in ("post", "patch", "put")
] + [
    # A DELETE beside a POST of a body takes that body (a member to remove), though the document cannot
    # say so for a DELETE.
    ("delete", path, item["post"])
    for path, item in DOCUMENT["paths"].items()
    if "delete" in item and "requestBody" in item.get("post", {})
]


def _fields(operation: dict) -> list[str]:
    """The fields of the operation's JSON body, from its schema in the document."""
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if ref := schema.get("$ref"):
        schema = DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {}))


def _resolved(schema: dict) -> dict:
    if ref := schema.get("$ref"):
        return DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _shape(schema: dict) -> object:
    """A value of ``schema``'s shape: objects with every property, arrays with one item."""
    schema = _resolved(schema)
    if schema.get("type") == "object" or "properties" in schema:
        return {name: _shape(field) for name, field in schema.get("properties", {}).items()}
    if schema.get("type") == "array":
        return [_shape(schema.get("items", {}))]
    return {"integer": 1, "number": 1, "boolean": True}.get(str(schema.get("type")), "a")


def _conforming_bodies(world, task) -> dict[str, dict]:
    """Bodies the write operations with lists of values or objects accept (the created rows' names
    are made unique per request), so that a hostile value within them gets past every earlier check."""
    rule = Rule.objects.get(name="task", scope="GLOBAL", operation="VIEW").pk
    organizations = [{"id": world.org_a.pk, "input": plain()}]
    return {
        "/api/task": {
            "name": "t",
            "image": task.image,
            "collaboration_id": world.collab_ab.pk,
            "organizations": organizations,
            "databases": [{"label": "default", "query": "q"}],
        },
        "/api/column": {
            "db_label": "default",
            "collaboration_id": world.collab_ab.pk,
            "organizations": organizations,
            "query": "q",
        },
        "/api/collaboration": {"name": "c", "organization_ids": [world.org_a.pk, world.org_b.pk]},
        "/api/study": {
            "name": "s",
            "collaboration_id": world.collab_ab.pk,
            "organization_ids": [world.org_a.pk],
        },
        "/api/role": {"name": "r", "rules": [rule], "organization_id": world.org_a.pk},
        "/api/user": {
            "username": "u",
            "email": "u@example.org",
            "password": PASSWORD,
            "organization_id": world.org_a.pk,
            "roles": [Role.objects.get(name=VIEWER).pk],
            "rules": [rule],
        },
    }


# A leaf within a conforming body (an organization's id in a task's list, a database's label): what a
# generator's positive cases reach once the shape is right, and a top-level value alone never does.
LEAF_VALUES = [None, 0, -1, 2**63, 1.5, "1", "\x00", "a\x00b", "\ud800", "x" * 100_000, [], {}]
UNIQUE_FIELDS = ("name", "username", "email")


def _nested_bodies(shape: object) -> list[object]:
    """``shape`` with one leaf below its top level replaced by each hostile value."""
    if not isinstance(shape, dict):
        return []
    bodies: list[dict] = []

    def replace(container: Any, key: int | str, depth: int) -> None:
        original = container[key]
        if isinstance(original, (dict, list)):
            for inner in original if isinstance(original, dict) else range(len(original)):
                replace(original, inner, depth + 1)
        elif depth:
            for value in LEAF_VALUES:
                container[key] = value
                bodies.append(json.loads(json.dumps(shape)))
            container[key] = original

    for name in list(shape):
        replace(shape, name, 0)
    for number, body in enumerate(bodies):
        for name in UNIQUE_FIELDS:
            if isinstance(body.get(name), str):
                body[name] = f"{number}{body[name]}"
    return bodies


def _hostile_requests(operation: dict, conforming: dict | None) -> list[tuple[bytes, str]]:
    fields = _fields(operation) or ["id"]
    bodies = [{field: value} for field in fields for value in FIELD_VALUES]
    bodies += [dict.fromkeys(fields, value) for value in HOSTILE_VALUES]
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    bodies += _nested_bodies(conforming or (_shape(schema) if schema else None))
    # Lone surrogates survive only as JSON escapes (ensure_ascii), as a client would send them.
    return [(json.dumps(body).encode(), "application/json") for body in bodies] + HOSTILE_BODIES


@pytest.fixture
def run_of_node_a(world) -> Run:
    return make_task(world.collab_ab, world.org_a, world.org_a, world.org_b).runs.get(
        organization=world.org_a
    )


@pytest.fixture
def hostile_callers(world, run_of_node_a) -> dict[str, dict[str, str]]:
    """Root, a node and an algorithm container: between them every write operation gets past its gate."""
    return {
        "root": bearer(make_user(make_org("root-org"), "Root")),
        "node": bearer(world.node_a),
        "container": bearer(container_identity(run_of_node_a.task, world.node_a)),
    }


@pytest.mark.parametrize(("method", "path", "operation"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_a_hostile_body_is_never_a_server_error(
    api, world, hostile_callers, run_of_node_a, method, path, operation
):
    api.raise_request_exception = False  # a server error is a status to report, not a crash of the test
    # The run's id: a row for a run's path, and most likely one for the others' ({id} of a task, ...).
    url = path.replace("{id}", str(run_of_node_a.pk)).replace("{rule_id}", "1")
    conforming = _conforming_bodies(world, run_of_node_a.task).get(path) if method == "post" else None
    failures = []
    for caller in _past_the_gate(method, path, list(hostile_callers)):
        headers = hostile_callers[caller]
        for body, content_type in _hostile_requests(operation, conforming):
            response = api.generic(method.upper(), url, body, content_type, **headers)
            status = response.status_code
            json_answer = status == 204 or response.get("Content-Type", "").startswith("application/json")
            if (status >= 500 and status != NOT_CONFIGURED) or not json_answer:
                failures.append(
                    f"{caller} {body[:80]!r} ({content_type}): {status} {response.content[:200]!r}"
                )
    assert not failures, "\n".join(failures[:20])


# Query parameters as a fuzzer's negative cases send them: numbers out of every range and in other
# notations, LIKE patterns with wildcards and escapes, timestamps whose offset leaves the calendar.
HOSTILE_QUERY_VALUES = [
    *("", "-1", str(2**63), str(-(2**63) - 1), "1" * 50, "1.5", "1e5", "nan", "0x10", "1_000", " 1 "),
    *("\uff12", "\u0661", "true", "a,b,,", ",".join(["1"] * 5000), "x" * 20000),
    *("%", "_", "\\", "a\\", "\\\\", "%\\%", "'"),
    *("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2020-02-30"),
    *("\x00", "a\x00", "\u00e9", "\U0001f600", "\ufeff1", "1\n", "\t", "1;2", "[1]", '{"a": 1}'),
]
READS = [
    (path, [p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"])
    for path, item in DOCUMENT["paths"].items()
    if "get" in item
]
# The query parameters of the other operations (``delete_dependents``, a port's ``run_id``, ...).
OTHER_QUERIES = [
    (method, path, names)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method != "get"
    and (names := [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"])
]


@pytest.mark.parametrize(("path", "names"), READS, ids=[path for path, _ in READS])
def test_a_hostile_query_parameter_is_never_a_server_error(api, hostile_callers, run_of_node_a, path, names):
    api.raise_request_exception = False
    url = path.replace("{id}", str(run_of_node_a.pk)).replace("{rule_id}", "1").replace("{uuid}", "0" * 32)
    failures = []
    for caller in _past_the_gate("get", path, list(hostile_callers)):
        headers = hostile_callers[caller]
        for name in names:
            for value in HOSTILE_QUERY_VALUES:
                status = api.get(url, {name: value}, **headers).status_code
                if status >= 500 and status != NOT_CONFIGURED:
                    failures.append(f"{caller} {name}={value[:40]!r}: {status}")
    assert not failures, "\n".join(failures[:20])


# Query strings as no client library writes them: percent escapes that are not (or not UTF-8), a
# name without a value or without a name, the same parameter many times, a value given twice.
RAW_QUERY_STRINGS = ["%", "%zz", "%ff", "%ed%a0%80", "%00", "=1", "&&&", "a", "&".join(["id=1"] * 500)]


@pytest.mark.parametrize(("path", "names"), READS, ids=[path for path, _ in READS])
def test_a_malformed_query_string_is_never_a_server_error(api, hostile_callers, run_of_node_a, path, names):
    api.raise_request_exception = False
    url = path.replace("{id}", str(run_of_node_a.pk)).replace("{rule_id}", "1").replace("{uuid}", "0" * 32)
    queries = [
        *RAW_QUERY_STRINGS,
        *(f"{name}{raw}" for name in names for raw in ("=%ff", "=%00", "", "=1&" + name)),
    ]
    failures = []
    for caller in _past_the_gate("get", path, list(hostile_callers)):
        headers = hostile_callers[caller]
        for query in queries:
            status = api.get(f"{url}?{query}", **headers).status_code
            if status >= 500 and status != NOT_CONFIGURED:
                failures.append(f"{caller} ?{query[:60]}: {status}")
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize(
    ("method", "path", "names"), OTHER_QUERIES, ids=[f"{m} {p}" for m, p, _ in OTHER_QUERIES]
)
def test_a_hostile_query_parameter_of_a_write_is_never_a_server_error(
    api, hostile_callers, run_of_node_a, method, path, names
):
    api.raise_request_exception = False
    url = path.replace("{id}", str(run_of_node_a.pk))
    failures = []
    for caller in _past_the_gate(method, path, list(hostile_callers)):
        headers = hostile_callers[caller]
        for name in names:
            for value in HOSTILE_QUERY_VALUES:
                query = urlencode({name: value})
                # An id of no row: a value that gets past its check changes nothing the next ones need.
                target = url.replace(str(run_of_node_a.pk), str(2**31 - 1)) if method == "delete" else url
                response = api.generic(
                    method.upper(), f"{target}?{query}", b"{}", "application/json", **headers
                )
                if response.status_code >= 500 and response.status_code != NOT_CONFIGURED:
                    failures.append(f"{caller} {method} {name}={value[:40]!r}: {response.status_code}")
    assert not failures, "\n".join(failures[:20])


# Path parameters as a fuzzer fills them in: ids out of every range and in other notations, escapes that
# are not UTF-8 or are separators, and text where a number is asked for.
HOSTILE_PATH_VALUES = [
    *("0", "-1", str(2**31), str(2**63), "1" * 40, "1.5", "1e5", "%2e%2e", "%2F", "%00", "%ff", "%ed%a0%80"),
    *("%EF%BC%92", "%D9%A1", "a", "x" * 5000, "%20", "1%0A", "null", "true", "%7B%7D", "'"),
]
OPERATIONS = [
    (method, path)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in ("get", "post", "patch", "put", "delete") and "{" in path
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_a_hostile_path_parameter_is_never_a_server_error(api, hostile_callers, method, path):
    api.raise_request_exception = False
    failures = []
    for caller in _past_the_gate(method, path, list(hostile_callers)):
        headers = hostile_callers[caller]
        for value in HOSTILE_PATH_VALUES:
            url = re.sub(r"\{[^}]+\}", value, path)
            response = api.generic(method.upper(), url, b"{}", "application/json", **headers)
            json_answer = response.get("Content-Type", "").startswith("application/json")
            if (response.status_code >= 500 and response.status_code != NOT_CONFIGURED) or not json_answer:
                failures.append(
                    f"{caller} {method} {url[:80]}: {response.status_code} {response.content[:100]!r}"
                )
    assert not failures, "\n".join(failures[:20])


# Request header fields as a fuzzer (or a proxy) sends them: content negotiation no renderer meets, forwarding
# fields that are not addresses, a host this server is not, and encodings it does not speak.
HOSTILE_HEADERS = [
    *(
        {"HTTP_ACCEPT": value}
        for value in ("text/html", "application/xml", "*/*;q=x", "\x00", "a" * 10_000, "")
    ),
    *({"HTTP_ACCEPT_LANGUAGE": value} for value in ("xx", "*;q=2", "\x00", "en-" * 1000)),
    *({"HTTP_X_FORWARDED_FOR": value} for value in ("x", "1.2.3.4, ", "::1%eth0", ",,,", "\x00")),
    *({"HTTP_X_FORWARDED_PROTO": value} for value in ("https, http", "gopher", "")),
    *({"HTTP_HOST": value} for value in ("evil.example.com", "a b", "[::1", "\x00")),
    *({"HTTP_CONTENT_ENCODING": value} for value in ("gzip", "br", "x")),
    {"HTTP_TRANSFER_ENCODING": "chunked"},
    {"HTTP_ORIGIN": "null", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "TRACE"},
]


@pytest.mark.parametrize("method", ["get", "post", "options"])
@pytest.mark.parametrize("headers", HOSTILE_HEADERS, ids=[repr(h)[:60] for h in HOSTILE_HEADERS])
def test_a_hostile_header_is_never_a_server_error(api, hostile_callers, method, headers):
    api.raise_request_exception = False
    path = "/api/organization" if method != "post" else "/api/token/user"
    response = api.generic(
        method.upper(), path, b"{}", "application/json", **hostile_callers["root"], **headers
    )
    assert response.status_code < 500, response.content[:300]
    # An answer has a JSON body, but a preflight's (an OPTIONS of 200 may have none).
    json_answer = response.get("Content-Type", "").startswith("application/json")
    assert json_answer or (method, response.status_code) == ("options", 200), response.content[:200]


# Methods the document does not declare for a path, as a fuzzer tries them: the standard ones and some
# no framework knows.
UNDECLARED_METHODS = ("get", "post", "put", "patch", "delete", "trace", "connect", "propfind", "foo")
PATHS = list(DOCUMENT["paths"].items())


@pytest.mark.parametrize(("path", "item"), PATHS, ids=[path for path, _ in PATHS])
def test_an_undeclared_method_is_a_clear_refusal(api, hostile_callers, run_of_node_a, path, item):
    api.raise_request_exception = False
    url = re.sub(r"\{[^}]+\}", str(run_of_node_a.pk), path)
    failures = []
    for caller, headers in hostile_callers.items():
        for method in UNDECLARED_METHODS:
            if method in item:
                continue
            response = api.generic(method.upper(), url, b"{}", "application/json", **headers)
            json_answer = response.get("Content-Type", "").startswith("application/json")
            # Refused before the method is looked at (a token of the wrong kind) or for the method itself.
            if not 400 <= response.status_code < 500 or not json_answer:
                failures.append(f"{caller} {method} {url}: {response.status_code} {response.content[:100]!r}")
    assert not failures, "\n".join(failures[:20])
