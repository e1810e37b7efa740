"""Serve this project under another server than daphne, for the benchmark only.

    python bench/serve.py uvicorn --port 7612 --workers 2
    python bench/serve.py gunicorn-wsgi --port 7614 --workers 2

The servers are not requirements of the project; ``api.py`` installs them into ``bench/.deps``
(``pip install --target bench/.deps gunicorn 'uvicorn[standard]'``). That folder is appended to
``sys.path``, so the project's own pinned packages always win over its copies.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEPS = BENCH / ".deps"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("uvicorn", "gunicorn-wsgi", "gunicorn-uvicorn"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    sys.path.append(str(DEPS))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
    bind = f"{args.host}:{args.port}"
    if args.kind == "uvicorn":
        import uvicorn

        uvicorn.run(
            "vantage6.asgi:application",
            host=args.host,
            port=args.port,
            workers=args.workers,
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
        return
    from gunicorn.app.wsgiapp import run

    common = ["gunicorn", "--bind", bind, "--workers", str(args.workers), "--log-level", "warning"]
    if args.kind == "gunicorn-wsgi":
        # gthread keeps connections alive (the sync worker closes each one); one thread per worker
        # would serialize requests exactly as a sync worker does.
        sys.argv = [*common, "--worker-class", "gthread", "--threads", "4", "vantage6.wsgi:application"]
    else:
        sys.argv = [*common, "--worker-class", "uvicorn.workers.UvicornWorker", "vantage6.asgi:application"]
    run()


if __name__ == "__main__":
    main()
