"""A server process whose API requests can be made slow for real: a request with an ``X-Test-Hold:
<seconds>`` header holds its request thread that long once it is authenticated, as a request waiting for a
store or another process's confirmation does. ``python -c "import tests.realtime.slow_server as s;
s.main()"``."""

from __future__ import annotations

import threading
import time

import requests

from vantage6 import serve

HOLD_HEADER = "X-Test-Hold"


def wait_behind(
    url: str, floods: list[tuple[dict[str, str], str]], asker: dict[str, str]
) -> tuple[float, list[int]]:
    """The seconds ``asker``'s ``GET /api/user`` waited once the ``floods`` (headers with ``HOLD_HEADER``,
    path), all sent at once, hold their threads; and the floods' statuses once they are answered."""
    statuses: list[int] = []

    def flood_once(headers: dict[str, str], path: str) -> None:
        statuses.append(requests.get(f"{url}{path}", headers=headers, timeout=60).status_code)

    callers = [threading.Thread(target=flood_once, args=flood) for flood in floods]
    for caller in callers:
        caller.start()
    time.sleep(1)  # the floods hold their threads
    asked = time.monotonic()
    assert requests.get(f"{url}/api/user", headers=asker, timeout=30).status_code == 200
    waited = time.monotonic() - asked
    for caller in callers:
        caller.join(60)
    return waited, statuses


def install() -> None:
    import vantage6.asgi  # noqa: F401 - sets Django up; daphne serves this module, imported already

    # isort: split
    from rest_framework.views import APIView

    authenticate = APIView.perform_authentication

    def holding_authenticate(self: APIView, request) -> None:
        authenticate(self, request)
        time.sleep(float(request.META.get("HTTP_X_TEST_HOLD", 0)))

    APIView.perform_authentication = holding_authenticate  # type: ignore[method-assign]


def main() -> None:
    install()
    serve.main()
