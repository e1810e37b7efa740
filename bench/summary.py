"""The verdict of issue 14's targets from the JSON files of ``api.py`` (``bench/results/``).

    .venv/bin/python bench/summary.py                   # the latest run (its file per database)
    .venv/bin/python bench/summary.py --runs 3          # the 3 latest runs: the worst of them counts
    .venv/bin/python bench/summary.py bench/results/api-20261205-1300*.json ...

Targets, per row: at least 5x the original in CPU time per request of one process (``daphne``, c8 for
the reads, c1 and c8 for the writes) on every database, and at least 8x in wall-clock requests per
second for the 2-process deployment (``daphne-2``). "In every run": each ratio is the minimum over the
runs given. Logins are no target; ``POST /api/user`` (bcrypt at vantage6's 12 rounds) is a stated
exception. A cell whose pool ran out or that got non-2xx answers
(in any run) cannot count as met.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CPU_TARGET = 5.0
MACHINE_TARGET = 8.0
EXCEPTIONS = {
    "POST /api/token/": "login: no target",
    "POST /api/user (bcrypt)": "exception: bcrypt-bound",
}
FAILED = ("error", "missing", "timeout")


def load(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    data["file"] = Path(path).name
    data["meta"].setdefault("database", "sqlite")
    data["meta"].setdefault("run", Path(path).stem.removeprefix("api-")[:15])
    return data


def latest(runs: int) -> list[dict]:
    """The files of the ``runs`` latest runs of ``api.py``."""
    files = [load(p) for p in sorted(RESULTS.glob("api-*.json"))]
    keep = sorted({f["meta"]["run"] for f in files})[-runs:]
    return [f for f in files if f["meta"]["run"] in keep]


def _ratio(cells: dict, ours: str, key: str) -> tuple[float | None, str]:
    """Ours against the original in one run: (ratio, what spoils the cell)."""
    original, mine = cells.get("original"), cells.get(ours)
    if not original or not mine:
        return None, "not run"
    for cell in (original, mine):
        if cell["mode"] in FAILED:
            return None, f"{cell['mode']} ({cell.get('status')})"
    spoilt = "ran out" if original.get("ran_out") or mine.get("ran_out") else ""
    if original.get("non2xx") or mine.get("non2xx"):
        spoilt = spoilt or "non-2xx"
    if not original.get(key) or not mine.get(key):
        return None, "no figure"
    value = original[key] / mine[key] if key == "cpu_ms" else mine[key] / original[key]
    return value, spoilt


def _worst(runs: list[dict], label: str, ours: str, key: str, target: float) -> tuple[str, bool]:
    """The cell over all runs of one database: the smallest ratio, marked; True when met."""
    values, problems = [], []
    for run in runs:
        value, problem = _ratio(run["results"].get(label, {}), ours, key)
        if value is not None:
            values.append(value)
        if problem:
            problems.append(problem)
    if not values:
        return (problems[0] if problems else "-"), False
    low = min(values)
    spread = f" ({low:.1f}-{max(values):.1f})" if len(values) > 1 else ""
    if problems:
        return f"{low:.1f}x{spread} {problems[0]}", False
    return f"{low:.1f}x{spread} {'ok' if low >= target else 'BELOW'}", low >= target


def gaps(files: list[dict], targets: list[str], labels: list[str]) -> list[str]:
    """Every cell of ``targets`` and rows ``labels`` that a run's files lack or that failed (error,
    missing, timeout): a verdict without them would be one on fewer rows than asked."""
    found = []
    for f in files:
        for label in labels:
            for target in targets:
                cell, where = f["results"].get(label, {}).get(target), f"{f['meta']['database']}: {label}"
                if cell is None:
                    found.append(f"{where} on {target}: not measured")
                elif cell["mode"] in FAILED:
                    found.append(f"{where} on {target}: {cell['mode']} ({cell.get('status')})")
    return found


def render(files: list[dict]) -> str:
    by_db: dict[str, list[dict]] = {}
    for f in sorted(files, key=lambda f: f["meta"]["database"] != "sqlite"):  # SQLite first
        by_db.setdefault(f["meta"]["database"], []).append(f)
    labels = list(dict.fromkeys(label for f in files for label in f["results"]))
    header = ["endpoint"]
    for db in by_db:
        header += [f"{db} CPU x"]
    for db in by_db:
        header += [f"{db} 2-proc rps x"]
    header.append("verdict")
    body, met, counted = [], 0, 0
    for label in labels:
        cells, ok = [], True
        for key, ours, target in (("cpu_ms", "daphne", CPU_TARGET), ("rps", "daphne-2", MACHINE_TARGET)):
            for runs in by_db.values():
                cell, good = _worst(runs, label, ours, key, target)
                cells.append(cell)
                ok = ok and good
        exception = next((why for prefix, why in EXCEPTIONS.items() if label.startswith(prefix)), "")
        if exception:
            verdict = exception
        elif "not run" in cells:
            verdict = "incomplete: a target was not run"
        else:
            counted += 1
            met += ok
            verdict = "met" if ok else "**not met**"
        body.append([label, *cells, verdict])
    runs = sorted({f["meta"]["run"] for f in files})
    lines = [
        f"Verdict over {len(runs)} run(s) ({', '.join(runs)}): {met} of {counted} complete rows met "
        f"every target in every run (CPU x: daphne, target {CPU_TARGET:g}x; 2-proc rps x: daphne-2, target "
        f"{MACHINE_TARGET:g}x; the smallest ratio over the runs, their range in brackets).",
        "",
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
        *("| " + " | ".join(cells) + " |" for cells in body),
        "",
        "| file | database | when | wrk per cell | minutes | load at start | max load in a cell |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in files:
        m = f["meta"]
        load_max, seconds = m.get("load_max"), m.get("seconds")
        lines.append(
            f"| {f['file']} | {m['database']} | {m['when']} | {m['duration']} s | "
            f"{'-' if seconds is None else f'{seconds / 60:.1f}'} | {m['load']} | "
            f"{'-' if load_max is None else f'{load_max:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="result files (default: the latest run)")
    parser.add_argument("--runs", type=int, default=1, help="the latest N runs (without files)")
    args = parser.parse_args()
    files = [load(p) for p in args.files] if args.files else latest(args.runs)
    if not files:
        raise SystemExit(f"no result files in {RESULTS}")
    print(render(files))


if __name__ == "__main__":
    main()
