"""The document states what the server accepts: a body the request schema of its operation allows is not
refused as invalid (400), and a body it does not allow is refused. Each case is a body next to a valid
one, with one field changed to a value a rule of that field is about (password policy, reserved and
numeric names, base64, UUIDs, URLs, unique ids, blank and NUL text, unknown keys, keys one of which
is needed)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import jsonschema_rs
import pytest

from accounts.models import Rule
from collaborations.models import Study
from tests.factories import bearer, make_org, make_task, make_user
from tests.tasks.conftest import plain

_unique = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}{next(_unique)}"


@pytest.fixture
def document(api) -> dict:
    return json.loads(api.get("/api/schema?format=json").content)


def _allowed(document: dict, path: str, method: str, body: dict) -> bool:
    """Whether the document's request schema of the operation allows ``body``."""
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**schema, "components": document["components"]}).is_valid(body)


def _json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable`` is a type of its own there."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _json_schema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") and "type" in schema:
        converted["type"] = [schema["type"], "null"]
    return converted


def _answered_as_documented(document: dict, path: str, method: str, response) -> bool:
    """Whether the document's schema of the operation's answer with the response's status allows its body."""
    answer = document["paths"][path][method]["responses"][str(response.status_code)]
    schema = answer["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for(_json_schema({**schema, "components": document["components"]}))
    return validator.is_valid(json.loads(response.content))


def _user(org_id: int, password: str = "Password1!") -> dict:
    name = _name("user")
    return {"username": name, "email": f"{name}@example.org", "password": password, "organization_id": org_id}


def _cases(about: str, path: str, caller: str, body: Callable[[Any, Any], dict], values: list) -> list:
    """(what the case is about, path, caller, the body with the value in it) for each value."""
    return [(about, path, caller, partial(body, value=value)) for value in values]


NAMES = ["Team 1", "r2d2", "12", "-3", "1.5", " 7 ", ".5", "\u0661\u0662", "   ", "a\x00b", "x" * 129]
# Blanks as the server trims them (str.strip), which are not all those of ECMA-262's or Rust's ``\s``.
NAMES += ["\x1f", " \x1c\x85 ", "\ufeff", "\x1f12\x85", "\u30001.5"]
PASSWORDS = [
    "Password1!",
    "password1!",
    "PASSWORD1!",
    "Password!!",
    "Password11",
    "Pa1!",
    "Pa1!" + "a" * 68,
    "Pa1!" + "a" * 69,
    "Pa1!" + "a" * 125,
    "P\u00e4ssw0rd",
    "Password\u0661!",
    " Pass word1 ",
    # bcrypt's 72 bytes, the characters counted as the widest of them: 2 bytes each (36 and 37
    # characters), 3 (24, and 25 in 27 bytes), 4 (18, 19).
    "P\u00e41!" + "\u00e9" * 32,
    "P\u00e41!" + "\u00e9" * 33,
    "Pa1!" + "\u20ac" * 20,
    "Pa1!" + "a" * 20 + "\u20ac",
    "Pa1!" + "\U0001f600" * 14,
    "Pa1!" + "\U0001f600" * 15,
    # 74 bytes in 39 characters: within 72 characters but beyond 72 bytes.
    "Aa1!" + "\u00e9" * 35,
]
EMAILS = ["a@example.org", "0@0.a", "a@localhost", "a@b.co", "a@[1.2.3.4]"]
PUBLIC_KEYS = ["YWJj", "YWI=", "YQ==", "YWJjZA==", "", "YWJjZA=", "Y", "a b", "YQ===", "YQ", "Y\x00Q="]
API_KEYS = [
    "00000000-0000-4000-8000-000000000000",
    "ABCDEF00-0000-4000-8000-000000000000",
    "0" * 32,
    "{00000000-0000-4000-8000-000000000000}",
    "not-a-uuid",
    "",
]
TASK_CHANGES = [
    {},
    {"name": "12"},
    {"name": "+1.5"},
    {"name": "task 1"},
    {"name": ""},
    {"server_url": "https://v6.example.org/api"},
    {"server_url": "HTTP://server:5000"},
    {"server_url": "ftp://v6.example.org"},
    {"server_url": "http://"},
    {"server_url": "v6.example.org"},
    {"server_url": ""},
    {"server_url": "http://v6.example.org/api\x01"},
    {"server_url": "http://v6.example.org/api\r\n X-Injected: 1"},
    {"server_url": "http://v6.example.org/a b"},
    {"databases": [{"label": "default", "unknown": 1}]},
    {"databases": [{"label": "default", "preprocessing": [{"function": "f"}]}]},
    {"databases": [{"label": "default", "preprocessing": [{"parameters": {}}]}]},
    {"collaboration_id": None},
    {"collaboration_id": None, "study_id": None},
    {"databases": "default"},
    {"databases": ""},
    {"databases": 5},
]
RECOVERIES = [
    {},
    {"username": "nobody"},
    {"email": "no@example.org"},
    {"username": "a", "email": "a@b.org"},
]
CASES = [
    *_cases("password", "/api/user", "root", lambda w, value: _user(w.org_a.pk, value), PASSWORDS),
    *_cases("email", "/api/user", "root", lambda w, value: {**_user(w.org_a.pk), "email": value}, EMAILS),
    *_cases(
        "role name", "/api/role", "root",
        lambda w, value: {"name": value, "rules": [w.rule], "organization_id": w.org_a.pk},
        [*NAMES, "Researcher", "Root", "researcher"],
    ),
    *_cases("organization name", "/api/organization", "root", lambda _w, value: {"name": value}, NAMES),
    *_cases(
        "public key", "/api/organization", "root",
        lambda _w, value: {"name": _name("org"), "public_key": value}, PUBLIC_KEYS,
    ),
    *_cases("api key", "/api/token/node", "anonymous", lambda _w, value: {"api_key": value}, API_KEYS),
    *_cases(
        "organization ids", "/api/collaboration", "root",
        lambda w, value: {"name": _name("collab"), "encrypted": False, "organization_ids": value(w)},
        [lambda w: [w.org_a.pk, w.org_b.pk], lambda w: [w.org_a.pk, w.org_a.pk], lambda _w: []],
    ),
    *_cases("task", "/api/task", "researcher", lambda w, value: {**w.task, **value}, TASK_CHANGES),
    *_cases(
        "task input", "/api/task", "researcher",
        lambda w, value: {**w.task, "organizations": [{"id": w.org_a.pk, "input": value}]},
        [{"method": "avg"}, plain(), 5, ["x"]],
    ),
    *_cases(
        "task organizations", "/api/task", "researcher",
        lambda w, value: {**w.task, "organizations": [{"id": org(w).pk, "input": plain()} for org in value]},
        [[lambda w: w.org_a, lambda w: w.org_b], [lambda w: w.org_a, lambda w: w.org_a]],
    ),
    *_cases("recovery", "/api/recover/lost", "anonymous", lambda _w, value: value, RECOVERIES),
    *_cases(
        "two-factor code", "/api/token/user", "anonymous",
        lambda _w, value: {"username": "nobody", "password": "wrong", "mfa_code": value},
        [123456, "123456", 9999999999, 10000000000, -999999999, -1000000000, "12345678901"],
    ),
]  # fmt: skip


@pytest.fixture
def callers(world) -> dict[str, dict[str, str]]:
    world.rule = Rule.objects.get(name="task", scope="GLOBAL", operation="VIEW").pk
    world.task = {
        "image": "some/image",
        "collaboration_id": world.collab_ab.pk,
        "organizations": [{"id": world.org_a.pk, "input": plain()}],
        "databases": [{"label": "default"}],
    }
    return {
        "root": bearer(make_user(make_org("root-org"), "Root")),
        "researcher": bearer(make_user(world.org_a, "Researcher")),
        "anonymous": {},
    }


@pytest.mark.parametrize(
    ("about", "path", "caller", "body"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_the_document_says_which_bodies_are_valid(api, world, document, callers, about, path, caller, body):
    sent = body(world)
    response = api.post(path, sent, format="json", **callers[caller])

    refused = response.status_code == 400
    assert response.status_code < 500, response.content[:300]
    assert refused is not _allowed(document, path, "post", sent), (
        f"{about} {sent!r}: {response.status_code} {response.content[:300]!r}"
    )


def test_a_request_the_server_cannot_read_is_a_documented_answer(api, document, callers):
    """A malformed ``Host`` is a 400 whatever the operation: every operation documents it."""
    paths = [path for path, item in document["paths"].items() if "get" in item and "{" not in path]
    undocumented = []
    for path in paths:
        response = api.get(path, HTTP_HOST="a b", **callers["root"])
        if str(response.status_code) not in document["paths"][path]["get"]["responses"]:
            undocumented.append(f"{path}: {response.status_code}")
    assert not undocumented


def test_a_body_refused_when_empty_is_documented_as_required(api, document):
    """No body is read as an empty one: where that is refused, the document requires a body."""
    response = api.post("/api/recover/lost")

    assert response.status_code == 400
    assert document["paths"]["/api/recover/lost"]["post"]["requestBody"]["required"] is True


@pytest.mark.parametrize(
    ("kind", "member"),
    [("collaboration", "organization"), ("collaboration", "node"), ("study", "organization")],
)
def test_a_deletion_that_reads_a_body_documents_it(api, world, document, callers, kind, member):
    """``DELETE /<kind>/{id}/<member>`` takes the id in its body: a client following the document sends
    it and the member is taken out (without the body the server cannot know which), and the answer (the
    members left, or a message) is the one the document states."""
    path = f"/api/{kind}/{{id}}/{member}"
    body = {"id": world.org_b.pk if member == "organization" else world.node_b.pk}
    operation = document["paths"][path]["delete"]
    row = world.collab_ab
    if kind == "study":
        row = Study.objects.create(name=_name("study"), collaboration=world.collab_ab)
        row.organizations.set([world.org_a, world.org_b])

    response = api.delete(f"/api/{kind}/{row.pk}/{member}", **callers["root"])
    assert response.status_code == 400
    assert operation["requestBody"]["required"] is True
    assert _allowed(document, path, "delete", body)
    response = api.delete(f"/api/{kind}/{row.pk}/{member}", body, format="json", **callers["root"])
    assert response.status_code == 200, response.content
    assert _answered_as_documented(document, path, "delete", response), response.content


def test_the_audit_action_filter_takes_the_values_the_document_lists(api, document, callers):
    """The actions are a vocabulary: the document lists them, and a value it does not list (an empty one
    too) is refused rather than read as no filter or a filter nothing matches."""
    (action,) = [p for p in document["paths"]["/api/audit"]["get"]["parameters"] if p["name"] == "action"]
    listed = action["schema"]["enum"]

    assert api.get("/api/audit", {"action": listed[0]}, **callers["root"]).status_code == 200
    for unlisted in ["null", "", "USER.LOGIN"]:
        assert unlisted not in listed
        response = api.get("/api/audit", {"action": unlisted}, **callers["root"])
        assert response.status_code == 400, (unlisted, response.content)


def test_a_query_value_with_a_nul_character_is_refused_as_the_document_says(api, world, document, callers):
    """Every query value with a NUL character is a 400: the document allows none in a text parameter."""
    stated = []
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None or ("{" in path and path != "/api/collaboration/{id}"):
            continue
        if operation.get("security") and {"userToken": []} not in operation["security"]:
            continue  # a node's or a container's
        url = path.replace("{id}", str(world.collab_ab.pk))
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            if parameter["in"] != "query" or schema.get("type") != "string" or "format" in schema:
                continue  # a date or time format has no NUL character in it
            response = api.get(url, {parameter["name"]: "a\x00b"}, **callers["root"])
            assert response.status_code == 400, (path, parameter["name"], response.status_code)
            assert not jsonschema_rs.validator_for(schema).is_valid("a\x00b"), (path, parameter["name"])
            stated.append((path, parameter["name"]))
    assert ("/api/collaboration/{id}", "include") in stated


def test_a_container_token_is_answered_with_the_documented_status(api, world, document):
    """A node's request for a container token is answered 200 (as in vantage6), which the document says."""
    task = make_task(world.collab_ab, world.org_a, world.org_a)

    body = {"task_id": task.pk, "image": task.image}
    response = api.post("/api/token/container", body, format="json", **bearer(world.node_a))

    assert response.status_code == 200, response.content
    assert "200" in document["paths"]["/api/token/container"]["post"]["responses"]


def test_an_unknown_key_of_a_recovery_request_is_refused_as_the_document_says(api, document):
    """vantage6 refuses a recovery body's unknown keys; the document says the body takes no others, so a
    fuzzer's body with one more key is refused, not answered as a recovery."""
    schema = document["components"]["schemas"]["RecoverLostRequest"]
    response = api.post(
        "/api/recover/lost", {"email": "a@example.org", "username": "a", "errors": {}}, format="json"
    )
    assert schema["additionalProperties"] is False
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"errors": ["Unknown field."]}
