"""``manage.py createroot``: create the root user, or give it a new password and lift a lock-out."""

from __future__ import annotations

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework import serializers

from accounts.catalogue import ROOT_USERNAME
from accounts.serializers import validate_password_policy
from accounts.services import root_password_reset
from vantage6.management import FixtureError, require_migrated_database


def _read_password_file(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"cannot read the password file {path}: {exc.strerror or exc}") from None
    # One line; its line ending is not part of the password.
    return text.splitlines()[0] if text.strip() else ""


def _prompt() -> str:
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password: use --password-file FILE (or - for stdin)")
    password = getpass.getpass(f"Password for '{ROOT_USERNAME}': ")
    if password != getpass.getpass("Password (again): "):
        raise CommandError("the passwords do not match; nothing was changed")
    return password


class Command(BaseCommand):
    help = (
        f"Create the user '{ROOT_USERNAME}' (organization '{ROOT_USERNAME}', role Root), or reset its "
        "password when it exists: failed login attempts are cleared, so a locked-out root can log in "
        "again. The password is asked twice on the terminal, or read from --password-file, and must "
        "follow the password policy (8+ characters with an upper- and lower-case letter, a digit and a "
        "special character)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password-file",
            metavar="FILE",
            help="read the password from the first line of FILE ('-': standard input) instead of asking",
        )

    def handle(self, *_args: object, password_file: str | None, **_options: object) -> None:
        try:
            require_migrated_database()
        except FixtureError as exc:
            raise CommandError(exc.problems[0]) from None
        password = _read_password_file(password_file) if password_file else _prompt()
        try:
            validate_password_policy(password)
        except serializers.ValidationError as exc:
            raise CommandError("password refused: " + "; ".join(str(m) for m in exc.detail)) from None
        if root_password_reset(password=password):
            self.stdout.write(self.style.SUCCESS(f"Created user '{ROOT_USERNAME}'."))
        else:
            done = f"New password set for '{ROOT_USERNAME}'; failed login attempts cleared."
            self.stdout.write(self.style.SUCCESS(done))
