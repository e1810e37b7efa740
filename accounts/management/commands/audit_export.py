"""``manage.py audit_export --since ...``: the audit trail as JSON lines, for archives and SIEMs."""

from __future__ import annotations

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import AuditAction, AuditEntry
from accounts.selectors import audit_filtered
from accounts.serializers import AuditEntryOutput
from vantage6.api.params import parse_datetime
from vantage6.management import FixtureError, require_migrated_database


def _moment(raw: str) -> datetime:
    try:
        return parse_datetime(raw)
    except ValueError:
        raise CommandError(f"not an ISO-8601 date or datetime: {raw!r}") from None


class Command(BaseCommand):
    help = (
        "Write the audit entries written since a moment (UTC) to standard output, oldest first, one "
        "JSON object a line, with the fields of GET /api/audit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, metavar="WHEN", help="ISO-8601 date or datetime")
        parser.add_argument("--until", metavar="WHEN", help="ISO-8601 date or datetime (exclusive)")
        parser.add_argument("--action", choices=AuditAction.values, help="only entries of this action")
        parser.add_argument(
            "--organization",
            type=int,
            metavar="ID",
            help="only entries of this organization's actors or objects",
        )

    def handle(
        self,
        *_args: object,
        since: str,
        until: str | None,
        action: str | None,
        organization: int | None,
        **_options: object,
    ) -> None:
        try:
            require_migrated_database()
        except FixtureError as exc:
            raise CommandError(exc.problems[0]) from None
        entries = audit_filtered(
            AuditEntry.objects.all(),
            action=AuditAction(action) if action else None,
            organization_id=organization,
            since=_moment(since),
            until=_moment(until) if until else None,
        )
        for entry in entries.order_by("id").iterator(chunk_size=1000):
            self.stdout.write(json.dumps(AuditEntryOutput(entry).data, separators=(",", ":")))
