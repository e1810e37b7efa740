"""A database error reaches the log by its class and constraint only: its message can carry the values
of a row (``Key (email)=(...) already exists``), which are nobody's business in a log."""

from __future__ import annotations

import logging

import pytest
from django.db import connection

from accounts.models import AuditEntry, User
from collaborations import selectors
from tests.conftest import requires_services
from tests.factories import bearer, make_org, make_user
from vantage6.api.errors import UNEXPECTED

EMAIL = "private.person.7f3a@example.org"
SECRET = "private-value-31c9"


@pytest.mark.django_db(transaction=True)  # the constraint is checked by the database itself
def test_a_lost_uniqueness_race_is_a_400_logged_without_the_values(api, caplog, monkeypatch):
    org = make_org()
    auth = bearer(make_user(org, "Root"))
    create_user = User.objects.create_user

    def after_a_concurrent_request(**fields):
        # The request that won the race commits its user between this one's check and its insert.
        User.objects.create(username="winner-5d1c", email=EMAIL, organization=org)
        return create_user(**fields)

    monkeypatch.setattr(User.objects, "create_user", after_a_concurrent_request)
    body = {
        "username": "loser-9c1e",
        "email": EMAIL,
        "password": "Passw0rd!Passw0rd",
        "organization_id": org.pk,
    }
    audit = AuditEntry.objects.count()

    with caplog.at_level(logging.DEBUG):
        response = api.post("/api/user", body, format="json", **auth)

    assert response.status_code == 400
    assert response.json() == {
        "msg": "The request conflicts with existing data (a name or link already exists)."
    }
    lines = [record.getMessage() for record in caplog.records if "IntegrityError" in record.getMessage()]
    assert len(lines) == 1, caplog.text
    if connection.vendor == "postgresql":
        assert "constraint user_email" in lines[0]
    assert EMAIL not in caplog.text
    assert "loser-9c1e" not in caplog.text
    assert not User.objects.filter(username="loser-9c1e").exists()
    assert AuditEntry.objects.count() == audit


@requires_services("postgres")
@pytest.mark.django_db
def test_an_unexpected_database_error_is_a_500_logged_without_its_message(api, caplog, monkeypatch):
    user = make_user(make_org(), "Root")

    def failing_lookup(*_args, **_kwargs):
        with connection.cursor() as cursor:  # a real error of the database, quoting what it was given
            cursor.execute("SELECT %s::integer", [SECRET])

    monkeypatch.setattr(selectors, "organization_get", failing_lookup)

    with caplog.at_level(logging.DEBUG):
        response = api.get(f"/api/organization/{user.organization_id}", **bearer(user))

    assert response.status_code == 500
    assert response.json() == {"msg": UNEXPECTED}
    assert "Unhandled DataError, SQLSTATE 22P02 in OrganizationViewSet" in caplog.text
    assert "failing_lookup" in caplog.text  # the traceback is kept
    assert SECRET not in caplog.text
