"""Helpers of the operations tests: running management commands as ``manage.py`` does."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.core.management import ManagementUtility
from django.db import connections


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def manage(capsys, monkeypatch):
    """``manage(*argv)`` runs ``manage.py *argv`` in this process, on the test database, and gives its
    exit code and output as a terminal shows them."""
    # A command run from the command line closes the connections when done; the test still needs its own.
    monkeypatch.setattr(connections, "close_all", lambda: None)

    def run(*argv: str, stdin: str | None = None) -> Outcome:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = 0
        try:
            ManagementUtility(["manage.py", *argv]).execute()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
