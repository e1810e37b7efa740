"""The links of the OpenAPI document: a creation's answer leads to the operations on what it created, as
a client (or a schema-driven test's stateful phase) follows them."""

from __future__ import annotations

import re

import pytest

from accounts.models import Rule
from tests.factories import bearer, make_org, make_user


@pytest.fixture
def document(api) -> dict:
    return api.get("/api/schema", {"format": "json"}).json()


def _operations(document: dict) -> dict[str, tuple[str, str, dict]]:
    return {
        operation["operationId"]: (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }


def _links(document: dict, path: str) -> dict:
    responses = document["paths"][path]["post"]["responses"]
    return next(
        responses[status]["links"] for status in ("201", "200") if "links" in responses.get(status, {})
    )


def test_every_link_names_an_operation_and_its_path_parameters(document):
    operations = _operations(document)
    links = [
        link
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for response in operation.get("responses", {}).values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 20
    for link in links:
        _, target, _ = operations[link["operationId"]]
        assert {name.removeprefix("path.") for name in link["parameters"]} == set(
            re.findall(r"\{(\w+)\}", target)
        )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/organization", lambda _org: {"name": "linked"}),
        (
            "/api/role",
            lambda org: {"name": "linked", "organization_id": org.pk, "rules": [Rule.objects.first().pk]},
        ),
        (
            "/api/collaboration",
            lambda org: {"name": "linked", "organization_ids": [org.pk], "encrypted": False},
        ),
    ],
    ids=["organization", "role", "collaboration"],
)
def test_the_links_of_a_creation_lead_to_what_it_created(api, db, document, path, body):  # noqa: ARG001
    org = make_org("root-org")
    headers = bearer(make_user(org, "Root"))
    created = api.post(path, body(org), format="json", **headers)
    assert created.status_code in (200, 201), created.content
    operations = _operations(document)
    reads = [link for link in _links(document, path).values() if operations[link["operationId"]][0] == "get"]
    assert reads
    for link in reads:
        _, target, _ = operations[link["operationId"]]
        url = target
        for name, expression in link["parameters"].items():
            url = url.replace(
                f"{{{name.removeprefix('path.')}}}", str(created.json()[expression.rsplit("/", 1)[1]])
            )
        answer = api.get(url, **headers)
        assert answer.status_code == 200, (url, answer.content)
        assert answer.json()["id"] == created.json()["id"]
