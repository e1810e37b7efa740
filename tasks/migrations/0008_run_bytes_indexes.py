"""Indexes on the bytes a run shows in a page of runs (input, result and log) and of results: a list with
a large ``per_page`` finds its rows too large for a page in them (``vantage6.api.pagination``) instead of
reading the size of every row of the list."""

import django.db.models.expressions
from django.db import migrations, models

import vantage6.db.sizes


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0007_run_text_lz4"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                django.db.models.expressions.CombinedExpression(
                    django.db.models.expressions.CombinedExpression(
                        vantage6.db.sizes.OctetLength("input"), "+", vantage6.db.sizes.OctetLength("result")
                    ),
                    "+",
                    vantage6.db.sizes.OctetLength("log"),
                ),
                name="run_large_bytes",
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(vantage6.db.sizes.OctetLength("result"), name="run_result_bytes"),
        ),
    ]
