"""The socket layer's boundaries: the protocol library is infrastructure, and ``nodes`` does not reach
into ``tasks`` (what nodes report about runs goes through handlers ``tasks`` registers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

from nodes.events import housekeeping_jobs, node_reports
from tasks.services import run_log_reported, run_status_reported, runs_cleanup_if_due

ROOT = Path(settings.BASE_DIR)


def _imported(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("vantage6/socketio", ("nodes", "accounts", "tasks", "collaborations", "vantage6.api")),
        ("nodes", ("tasks",)),
    ],
)
def test_socket_layers_import_nothing_above_them(folder, forbidden):
    imported = _imported(folder)
    assert not {name for name in imported if any(name == f or name.startswith(f"{f}.") for f in forbidden)}


def test_tasks_registers_its_run_reports_and_housekeeping_at_start_up():
    assert node_reports == {
        "algorithm_status_change": run_status_reported,
        "algorithm_log": run_log_reported,
    }
    assert runs_cleanup_if_due in housekeeping_jobs
