"""The ASGI application: Django for HTTP, and Socket.IO (polling and websocket) at ``/socket.io/``."""

import gc
import os
import re
from collections.abc import Awaitable, Callable

from vantage6.env import load_settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
load_settings_or_exit()
import django  # noqa: E402

django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first
from django.conf import settings  # noqa: E402
from django.urls import get_resolver, re_path  # noqa: E402

from accounts.authentication import request_identity  # noqa: E402
from accounts.tokens import is_api_access_token  # noqa: E402
from nodes.consumers import server  # noqa: E402
from nodes.routing import http_routes, socket_application, websocket_routes  # noqa: E402
from vantage6 import limits, throttle  # noqa: E402
from vantage6.handler import PooledASGIHandler, StaticFilesHandler  # noqa: E402

# daphne (`make run`, the Docker image, runserver) imports this module before it serves.
limits.install(is_access_token=is_api_access_token)

django_http = PooledASGIHandler(
    identify=request_identity,
    client_of=lambda scope: throttle.scope_client_address(scope, settings.TRUSTED_PROXIES),
)
# The admin's and API docs' static files are served by the server itself: one command starts it all.
django_application = StaticFilesHandler(django_http)

router = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_routes, re_path(r"", django_application)]),  # type: ignore[arg-type]  # ASGI app
        "websocket": URLRouter(websocket_routes),
    }
)
# API requests skip the routing of the Socket.IO routes and the static files check.
API_PREFIX = f"{settings.API_PATH}/" if settings.API_PATH else None
SOCKET_PATH = re.compile(r"^/socket\.io/?$")


async def application(
    scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
) -> None:
    # The periodic work (silent nodes offline, dead socket sessions, the hourly run data clean-up) runs
    # in every instance's loop, started by its first request of any kind.
    kind = scope["type"]
    if kind != "lifespan":
        server.ensure_housekeeping()
        if kind == "http" and API_PREFIX and scope["path"].startswith(API_PREFIX):
            return await django_http(scope, receive, send)
        if kind == "websocket" and SOCKET_PATH.match(scope["path"]):
            # No router frames or scope copies held for the life of every websocket.
            return await socket_application(scope, receive, send)
    return await router(scope, receive, send)


# The URL configuration is imported now, not by the first request: that import must not meet a process at
# its descriptor limit (it failed there, a 500), and what it makes is frozen with the rest below.
get_resolver().url_patterns  # noqa: B018 - the property imports it

# What start-up made (Django's apps and models, the URL patterns, the libraries: ~120,000 objects) lives as
# long as the process. Frozen, it is left out of the cycle collector's full collections, which otherwise
# walked all of it each time one ran, holding every request of the process for 50-110 ms.
gc.freeze()
