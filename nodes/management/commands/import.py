"""``manage.py import FILE``: load a YAML fixture of organizations, collaborations, users, nodes, studies."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from nodes.management.fixture import SECTIONS, load, node_key_lines, read
from vantage6.management import FixtureError, require_migrated_database


class Command(BaseCommand):
    help = (
        f"Load a YAML fixture with the sections {', '.join(SECTIONS)} (see examples/fixture.yaml) in one "
        "transaction. Entries are matched by name: existing ones are updated, none is duplicated or "
        "deleted, and an existing user keeps its password. Prints the API keys of the nodes it creates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML fixture to load")

    def handle(self, *_args: object, file: str, **_options: object) -> None:
        try:
            require_migrated_database()
            data = read(Path(file))
            self.stdout.write(f"Loading {file}")
            report = load(data, progress=lambda line: self.stdout.write(f"  {line}"))
        except FixtureError as exc:
            raise CommandError("nothing was imported:\n  " + "\n  ".join(exc.problems)) from None
        for line in node_key_lines(report.node_keys):
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Import complete."))
