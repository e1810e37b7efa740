"""The ASGI application: Django for HTTP, and Socket.IO (polling and websocket) at ``/socket.io/``."""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from vantage6.env import load_settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
load_settings_or_exit()
# The admin's and API docs' static files are served by the server itself: one command starts it all.
django_application = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first
from django.urls import re_path  # noqa: E402

from nodes.consumers import server  # noqa: E402
from nodes.routing import http_routes, websocket_routes  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_routes, re_path(r"", django_application)]),
        "websocket": URLRouter(websocket_routes),
    }
)


async def application(scope, receive, send):
    # The periodic sweeps (silent nodes offline, dead socket sessions) run in every instance's loop,
    # started by its first request of any kind.
    if scope["type"] != "lifespan":
        server.ensure_housekeeping()
    return await router(scope, receive, send)
