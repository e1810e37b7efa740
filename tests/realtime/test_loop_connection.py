"""The run check of a node's report read on the event loop builds no database wrapper per report: each
message a socket handles runs in a context of its own, for which Django would build one."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connections

from tasks.services import run_status_read_on_loop, run_status_reported
from tests.factories import make_collab, make_node, make_org, make_task


@pytest.mark.django_db(transaction=True)
def test_the_run_checks_of_a_loop_share_one_database_wrapper(monkeypatch):
    organization = make_org()
    collaboration = make_collab(organization, make_org())
    node, _ = make_node(organization, collaboration)
    run = make_task(collaboration, organization, organization).runs.get()
    reporter = {"id": node.pk, "org_id": organization.pk, "collaboration_id": collaboration.pk}
    report = {"run_id": run.pk, "status": "active"}
    expected = run_status_reported(reporter, report)  # compiles the query, as the first report does
    assert expected is not None
    built: list[str] = []
    create = connections.create_connection

    def counted(alias: str):
        built.append(alias)
        return create(alias)

    monkeypatch.setattr(connections, "create_connection", counted)

    async def reports() -> list:
        # One task each, as each message of a socket runs in a context of its own.
        return [await asyncio.create_task(run_status_read_on_loop(reporter, report)) for _ in range(5)]

    answers = asyncio.run(reports())
    assert all(answer in ((True, expected), (False, None)) for answer in answers)
    assert len(built) <= 1  # the loop's one wrapper, not one per report
