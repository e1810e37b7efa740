"""Fixtures of the tests of callers checked by the writes themselves."""

from __future__ import annotations

import pytest

from tests.factories import make_collab, make_node, make_org, make_task


@pytest.fixture
def network():
    """Two organizations of one collaboration, a node each, and a task for both: (the first
    organization, the collaboration, its node, the other's node, the task)."""
    org, other = make_org("o"), make_org("p")
    collab = make_collab(org, other, name="c")
    node, _ = make_node(org, collab, "n")
    other_node, _ = make_node(other, collab, "m")
    task = make_task(collab, org, org, other)
    return org, collab, node, other_node, task
