"""Wipe the results (and optionally the inputs) of runs that completed long enough ago."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.services import runs_cleanup


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(f"--days must be a whole number of days, got {raw!r}") from None
    if value < 1:
        raise CommandError(f"--days must be at least 1, got {value}")
    return value


class Command(BaseCommand):
    help = (
        "Clear the results of completed algorithm runs that finished more than N days ago and mark them "
        "with cleanup_at (also their inputs with --include-input). N defaults to V6_RUNS_DATA_CLEANUP_DAYS; "
        "run it periodically, e.g. hourly from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=str,
            default=None,
            help="Age in days after which results are cleared (default: V6_RUNS_DATA_CLEANUP_DAYS).",
        )
        parser.add_argument(
            "--include-input",
            action="store_true",
            default=None,
            help="Also clear the inputs (default: V6_RUNS_DATA_CLEANUP_INCLUDE_INPUT).",
        )

    def handle(
        self, *_args: object, days: str | None, include_input: bool | None, **_options: object
    ) -> None:
        if days is None:
            if settings.RUNS_DATA_CLEANUP_DAYS < 1:
                self.stdout.write("Run data clean-up is off (V6_RUNS_DATA_CLEANUP_DAYS is 0); nothing done.")
                return
            age = settings.RUNS_DATA_CLEANUP_DAYS
        else:
            age = _positive_int(days)
        if include_input is None:
            include_input = settings.RUNS_DATA_CLEANUP_INCLUDE_INPUT
        count = runs_cleanup(days=age, include_input=include_input)
        what = "results and inputs" if include_input else "results"
        self.stdout.write(f"Cleared the {what} of {count} run(s) completed more than {age} day(s) ago.")
