"""``/api/schema`` generates the OpenAPI document once per process: anyone may ask for it, and each
generation costs tens to hundreds of ms of CPU. What it answers is what drf-spectacular's view answers
for the same request, byte for byte and header for header, whoever asks and in whichever format."""

from __future__ import annotations

import json
import threading

import pytest
import yaml
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView

from tests.factories import bearer, make_user
from vantage6.api import schema_view

# The formats the view offers, by ``?format`` and by ``Accept`` (with a JSON indent DRF reads from it).
FORMATS = [
    ("", {}),
    ("?format=json", {}),
    ("?format=yaml", {}),
    ("", {"HTTP_ACCEPT": "application/json"}),
    ("", {"HTTP_ACCEPT": "application/json; indent=2"}),
    ("", {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}),
    ("", {"HTTP_ACCEPT": "application/yaml"}),
    ("", {"HTTP_ACCEPT": "application/vnd.oai.openapi"}),
]


@pytest.fixture
def generations(monkeypatch) -> list[int]:
    """The document as a fresh process has it (not generated yet); one entry per generation."""
    monkeypatch.setattr(schema_view, "document", schema_view.Document())
    calls: list[int] = []
    generate = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        calls.append(1)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    return calls


def test_every_request_in_every_format_is_answered_from_one_generation(api, world, generations):
    root = bearer(make_user(world.org_a, "Root"))
    first = [api.get(f"/api/schema{query}", **headers) for query, headers in FORMATS]
    again = [api.get(f"/api/schema{query}", **headers, **root) for query, headers in FORMATS]
    head = api.head("/api/schema?format=json")

    assert len(generations) == 1
    assert [answer.status_code for answer in first + again] == [200] * (2 * len(FORMATS))
    assert [(a.content, a["Content-Type"]) for a in again] == [(a.content, a["Content-Type"]) for a in first]
    assert (head.status_code, head.content, head["Content-Type"]) == (200, b"", first[1]["Content-Type"])
    # libyaml's safe loader: the same document as the pure-Python one reads, some 20 times sooner.
    documents = [
        json.loads(a.content) if "json" in a["Content-Type"] else yaml.load(a.content, yaml.CSafeLoader)
        for a in first
    ]
    assert all(document == documents[0] for document in documents)
    assert "/api/rule/{id}" in documents[0]["paths"]
    assert first[4].content.startswith(b'{\n  "openapi"')  # indented as asked


def test_a_burst_of_first_requests_waits_for_one_generation(rf, db, generations):  # noqa: ARG001
    view = schema_view.SchemaView.as_view()
    answers: list[bytes] = []

    def ask() -> None:
        answers.append(view(rf.get("/api/schema")).content)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(generations) == 1
    assert len(answers) == 4 and len(set(answers)) == 1


@pytest.mark.parametrize(
    ("query", "headers", "caller"),
    [
        ("", {}, False),
        ("?format=json", {"HTTP_HOST": "elsewhere.example"}, True),
        ("", {"HTTP_ACCEPT": "application/json; indent=2"}, True),
    ],
)
def test_the_kept_answer_is_the_one_generated_for_the_request(rf, world, generations, query, headers, caller):
    if caller:
        headers = {**headers, **bearer(make_user(world.org_a, "Root"))}
    schema_view.SchemaView.as_view()(rf.get("/api/schema"))  # the document is kept, for another caller
    kept = schema_view.SchemaView.as_view()(rf.get(f"/api/schema{query}", **headers))
    generated = SpectacularAPIView.as_view()(rf.get(f"/api/schema{query}", **headers)).render()

    assert len(generations) == 2  # the kept one, and drf-spectacular's own for this request
    assert kept.status_code == generated.status_code == 200
    assert kept.content == generated.content
    assert list(kept.items()) == list(generated.items())


def test_the_docs_pages_load_the_kept_document(api, db, generations):  # noqa: ARG001
    for page in ("docs", "redoc"):
        html = api.get(f"/api/{page}").content.decode()
        assert '"/api/schema"' in html  # the URL the page loads the document from
    assert api.get("/api/schema").status_code == 200
    assert len(generations) == 1
