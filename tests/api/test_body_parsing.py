"""JSON bodies that are not valid JSON text in their charset are refused and change nothing."""

from __future__ import annotations

import pytest

from tasks.models import AlgorithmPort
from tests.factories import bearer, make_collab, make_node, make_org, make_run, make_task

pytestmark = pytest.mark.django_db

REFUSED = [
    # A body cut within a character: its last bytes were dropped and the rest taken as the body.
    (b'{"port": 8080, "run_id": RUN}\xe2\x82', "application/json"),
    (b'{"port": 8080, "run_id": RUN, "label": "\xff"}', "application/json"),
    (b'{"port": NaN, "run_id": RUN}', "application/json"),
    (b'{"port": 8080, "run_id": RUN}', "application/json; charset=bz2_codec"),
]


@pytest.fixture
def node_and_run():
    org = make_org("o")
    collab = make_collab(org)
    node, _ = make_node(org, collab)
    return node, make_run(make_task(collab, org), org)


@pytest.mark.parametrize(("body", "content_type"), REFUSED)
def test_a_body_that_is_not_json_text_is_a_400(api, node_and_run, body, content_type):
    node, run = node_and_run
    body = body.replace(b"RUN", str(run.pk).encode())
    response = api.generic("POST", "/api/port", body, content_type, **bearer(node))
    assert response.status_code == 400, response.content
    assert "msg" in response.json()
    assert not AlgorithmPort.objects.exists()


def test_a_body_in_another_text_charset_is_read(api, node_and_run):
    node, run = node_and_run
    body = f'{{"port": 8080, "run_id": {run.pk}, "label": "\u00e9t\u00e9"}}'.encode("utf-16")
    response = api.generic("POST", "/api/port", body, "application/json; charset=utf-16", **bearer(node))
    assert response.status_code == 201, response.content
    assert AlgorithmPort.objects.get().label == "\u00e9t\u00e9"
