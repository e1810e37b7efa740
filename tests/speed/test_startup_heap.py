"""The start-up heap of a serving process is out of the cycle collector's full collections."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, sys, time
import vantage6.asgi
started = time.perf_counter()
gc.collect()
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()),
                  "full_ms": (time.perf_counter() - started) * 1000, "urls": "vantage6.urls" in sys.modules}))
"""


def _started(tmp_path: Path) -> dict:
    """What the probe found in a process that imported the ASGI application, as daphne does."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": "/usr/bin:/bin", "V6_DATA_DIR": str(tmp_path)},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_full_collection_in_a_serving_process_does_not_walk_what_start_up_made(tmp_path):
    found = _started(tmp_path)
    # Django, the apps and the libraries: tens of thousands of objects, all frozen at the module's import;
    # what the collector still walks is what the probe made after it.
    assert found["frozen"] > 50_000
    assert found["tracked"] < found["frozen"] / 20


def test_the_url_configuration_is_loaded_before_the_first_request(tmp_path):
    # Imported by the first request instead, it failed there when the process was at its descriptor
    # limit (a 500), and was left out of the frozen heap.
    assert _started(tmp_path)["urls"]
