"""A request answered 503 because the database could not serve it notes the outage, and the next
connection to the database ends it: ``database_recovered`` is sent once (the socket server tells its
nodes ``sync`` on it). Both answers of a 503 note it: DRF's exception handler and Django's handler500."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection
from django.db.backends.signals import connection_created
from django.test import Client

from tests import factories
from vantage6 import database_outage


def _refuse(*_args: object) -> None:
    raise OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def recoveries():
    """The ``database_recovered`` signals sent while the test runs."""
    heard: list[object] = []

    def record(**kwargs: object) -> None:
        heard.append(kwargs["sender"])

    database_outage.database_recovered.connect(record)
    try:
        yield heard
    finally:
        database_outage.database_recovered.disconnect(record)
        database_outage.reached()  # no outage left for a later test


def _connection_made() -> None:
    connection_created.send(sender=type(connection), connection=connection)


@pytest.mark.django_db
def test_a_503_from_the_api_is_an_outage_whose_end_is_sent_once(api, world, recoveries):
    headers = factories.bearer(world.node_a)
    _connection_made()
    assert recoveries == []  # no outage, nothing ended

    with connection.execute_wrapper(_refuse):
        response = api.get("/api/run", **headers)
    assert response.status_code == 503, response.content
    assert response.json() == {"msg": "The database is unavailable at the moment; try again later."}
    assert response.headers["Retry-After"] == "1"
    assert recoveries == []

    _connection_made()
    _connection_made()
    assert recoveries == [None]


@pytest.mark.django_db
def test_a_503_outside_the_api_is_an_outage_too(world, recoveries):
    browser = Client(raise_request_exception=False)
    browser.force_login(factories.make_user(world.org_a, "Root"))
    with connection.execute_wrapper(_refuse):
        response = browser.get("/admin/")
    assert response.status_code == 503, response.content
    assert response.json() == {"msg": "The database is unavailable at the moment; try again later."}

    _connection_made()
    assert recoveries == [None]
