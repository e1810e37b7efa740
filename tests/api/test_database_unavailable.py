"""A database that refuses writes (read-only, as a standby or a read-only file is) or is down: every
request gets a JSON 503 naming the cause, the log says why, and nothing is written. The 503 notes the
outage, and the next connection to the database ends it: ``database_recovered`` is sent once (the socket
server tells its nodes ``sync`` on it)."""

from __future__ import annotations

import logging

import pytest
from django.db import OperationalError, connection
from django.db.backends.signals import connection_created
from django.test import Client

from accounts.models import AuditEntry
from collaborations.models import Collaboration, Organization
from tests.factories import PASSWORD, bearer, make_org, make_user
from vantage6 import database_outage
from vantage6.api.errors import DATABASE_UNAVAILABLE

# The real read-only switch of each database: writes then fail in the database itself.
READ_ONLY = {
    "sqlite": ("PRAGMA query_only = ON", "PRAGMA query_only = OFF"),
    "postgresql": ("SET default_transaction_read_only = on", "SET default_transaction_read_only = off"),
}


@pytest.fixture
def read_only_database():
    on, off = READ_ONLY[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(on)
    yield
    with connection.cursor() as cursor:
        cursor.execute(off)


def rows() -> tuple[int, int, int]:
    return Organization.objects.count(), Collaboration.objects.count(), AuditEntry.objects.count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/organization", {"name": "written-while-read-only"}),
        (
            "/api/collaboration",
            {"name": "written-while-read-only", "organization_ids": [], "encrypted": False},
        ),
    ],
)
def test_a_write_to_a_read_only_database_is_a_503(api, caplog, path, body, request):
    org = make_org()
    auth = bearer(make_user(org, "Root"))
    body = {**body, "organization_ids": [org.pk]} if "organization_ids" in body else body
    before = rows()
    request.getfixturevalue("read_only_database")
    with caplog.at_level(logging.ERROR, logger="vantage6.api"):
        response = api.post(path, body, format="json", **auth)
    assert response.status_code == 503
    assert response.json() == {"msg": DATABASE_UNAVAILABLE}
    assert f"Database unavailable, {path} answered 503" in caplog.text
    connection.cursor().execute(READ_ONLY[connection.vendor][1])
    assert rows() == before


@pytest.mark.django_db(transaction=True)
def test_the_admin_site_on_a_read_only_database_is_a_json_503(request):
    """Outside the API views (Django's own views and middleware) the same answer, not a 500 page."""
    user = make_user(make_org(), "Root")
    client = Client(raise_request_exception=False)
    request.getfixturevalue("read_only_database")
    response = client.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 503
    assert response.json() == {"msg": DATABASE_UNAVAILABLE}


def _refuse(*_args: object) -> None:
    raise OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def recoveries():
    """The ``database_recovered`` signals sent while the test runs."""
    heard: list[object] = []

    def record(**kwargs: object) -> None:
        heard.append(kwargs["sender"])

    database_outage.reached()  # the end of an outage an earlier test answered 503 for
    database_outage.database_recovered.connect(record)
    try:
        yield heard
    finally:
        database_outage.database_recovered.disconnect(record)
        database_outage.reached()


def _connection_made() -> None:
    connection_created.send(sender=type(connection), connection=connection)


@pytest.mark.django_db
def test_a_503_from_the_api_is_an_outage_whose_end_is_sent_once(api, world, recoveries):
    headers = bearer(world.node_a)
    _connection_made()
    assert recoveries == []  # no outage, nothing ended

    with connection.execute_wrapper(_refuse):
        response = api.get("/api/run", **headers)
    assert response.status_code == 503, response.content
    assert response.json() == {"msg": DATABASE_UNAVAILABLE}
    assert response.headers["Retry-After"] == "1"
    assert recoveries == []

    _connection_made()
    _connection_made()
    assert recoveries == [None]


@pytest.mark.django_db
def test_a_503_outside_the_api_is_an_outage_too(world, recoveries):
    browser = Client(raise_request_exception=False)
    browser.force_login(make_user(world.org_a, "Root"))
    with connection.execute_wrapper(_refuse):
        response = browser.get("/admin/")
    assert response.status_code == 503, response.content
    assert response.json() == {"msg": DATABASE_UNAVAILABLE}

    _connection_made()
    assert recoveries == [None]
