"""Schema fuzzing: requests generated from the OpenAPI document (``/api/schema``), sent as root and as
a node, and every answer checked against the document.

Bounded and repeatable: a few derandomized examples per operation, each operation in its own
rolled-back transaction. An answer fails when it is a server error, or when its status, content type,
headers or body are not what the document declares for that operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import bearer, make_org, make_task, make_user
from vantage6.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema", application)

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


@pytest.fixture(params=["root", "node"])
def caller_headers(request, world, _connection_kept) -> dict[str, str]:
    """The token of root or of a node, in a world with a task (so lists and runs have rows)."""
    make_task(world.collab_ab, world.org_a, world.org_a, world.org_b)
    identity = make_user(make_org("root-org"), "Root") if request.param == "root" else world.node_a
    return {"Authorization": bearer(identity)["HTTP_AUTHORIZATION"]}


@schema.parametrize()
@settings(
    max_examples=4,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_what_the_document_says(case, caller_headers):
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
