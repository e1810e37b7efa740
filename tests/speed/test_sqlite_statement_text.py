"""On SQLite a statement's text is converted to sqlite3's parameter style once, not on every execution,
and converts as Django converts it: ``%s`` a parameter, ``%%`` a percent sign."""

from __future__ import annotations

import pytest
from django.db import connection

from collaborations.models import Organization
from vantage6.db.sqlite3.base import qmark_query

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's parameter style"),
]


def test_a_statement_run_again_is_not_converted_again():
    names = ["first", "second", "third"]
    Organization.objects.filter(name=names[0]).first()  # its text converted (or found converted)
    misses = qmark_query.cache_info().misses
    for name in names:
        Organization.objects.filter(name=name).first()  # the same text, other parameters
    assert qmark_query.cache_info().misses == misses


@pytest.mark.parametrize(
    ("sql", "params", "row"),
    [
        ("SELECT %s, %s", ["a", 1], ("a", 1)),
        ("SELECT '%%', %s", ["%s"], ("%", "%s")),
        ("SELECT '100%%s' || %s", ["%%"], ("100%s%%",)),
    ],
)
def test_a_statements_parameters_and_percent_signs_are_what_django_makes_of_them(sql, params, row):
    for _ in range(2):  # converted, then found converted
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            assert cursor.fetchone() == row


def test_values_with_percent_signs_are_stored_and_found_as_given():
    name = "100%s %% done"
    Organization.objects.create(name=name)
    assert Organization.objects.filter(name__contains="%s %%").get().name == name
