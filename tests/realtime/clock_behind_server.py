"""A server process whose clock runs ``CLOCK_BEHIND`` seconds behind the others' (a host whose clock
drifted): ``python -c "import tests.realtime.clock_behind_server as s; s.main()"``. Its ``time.time()``
and the wall-clock reads of the liveness rows (``nodes.socket_store``'s ``datetime``) are shifted."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, tzinfo

import django

from vantage6 import serve


def main() -> None:
    behind = float(os.environ["CLOCK_BEHIND"])
    real_time = time.time
    time.time = lambda: real_time() - behind

    class Behind(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return datetime.now(tz) - timedelta(seconds=behind)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
    django.setup()
    from nodes import socket_store

    socket_store.datetime = Behind  # type: ignore[attr-defined,misc]  # read only where it is imported
    serve.main()
