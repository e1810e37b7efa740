"""The gauges of tasks at ``/api/metrics``: runs by status."""

from __future__ import annotations

from django.db.models import Count

from tasks.models import Run


def gauges() -> list[str]:
    lines = ["# HELP vantage6_runs runs by status", "# TYPE vantage6_runs gauge"]
    for row in Run.objects.values("status").annotate(n=Count("id")).order_by("status"):
        lines.append(f'vantage6_runs{{status="{row["status"]}"}} {row["n"]}')
    return lines
