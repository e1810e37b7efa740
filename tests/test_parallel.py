"""The suite's own scheduling on pytest-xdist workers (tests/parallel.py)."""

from __future__ import annotations

import pytest

from tests.ops import services


@services.ONE_DEPLOYMENT_AT_A_TIME
def test_a_deployment_test_runs_on_the_deployments_worker(request):
    """Under ``--dist loadgroup`` (make test), a deployment's test is named for its group, so that the
    controller sends every such test to one worker."""
    if not hasattr(request.config, "workerinput"):
        pytest.skip("not on an xdist worker")
    assert request.node.nodeid.endswith("@deployments")
