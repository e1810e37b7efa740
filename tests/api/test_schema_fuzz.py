"""Schema fuzzing: requests generated from the OpenAPI document (``/api/schema``), sent as root.

Bounded and repeatable: a few derandomized examples per operation, each operation in its own
rolled-back transaction. The only check is that no request gets a server error.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.factories import bearer, make_org, make_user
from vantage6.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema", application)


@pytest.fixture
def _connection_kept():
    """The application is called as a server would (not through Django's test client): the end of a
    request must not close the connection that holds the test's transaction."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


# 501 is the documented answer of a feature this server is not configured for (blob store, VPN).
NOT_CONFIGURED = 501


@pytest.fixture
def root_headers(world, _connection_kept) -> dict[str, str]:  # noqa: ARG001 - rows for the ids to point at
    token = bearer(make_user(make_org("root-org"), "Root"))["HTTP_AUTHORIZATION"]
    return {"Authorization": token}


@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_is_a_server_error(case, root_headers):
    # The generated credentials (often none, or garbage) give way to root's: the fuzzing is meant
    # to get past authentication.
    case.headers = {**(case.headers or {}), **root_headers}
    response = case.call()
    if response.status_code != NOT_CONFIGURED:
        case.validate_response(response, checks=[not_a_server_error], headers=root_headers)
