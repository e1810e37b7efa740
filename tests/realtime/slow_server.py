"""A server process whose API requests can be made slow for real: a request with an ``X-Test-Hold:
<seconds>`` header holds its request thread that long once it is authenticated, as a request waiting for a
store or another process's confirmation does. ``python -c "import tests.realtime.slow_server as s;
s.main()"``."""

from __future__ import annotations

import time

from vantage6 import serve

HOLD_HEADER = "X-Test-Hold"


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
