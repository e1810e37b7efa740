"""The ASGI application: Django for HTTP, and Socket.IO (polling and websocket) at ``/socket.io/``."""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vantage6.settings")
# The admin's and API docs' static files are served by the server itself: one command starts it all.
django_application = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first
from django.urls import re_path  # noqa: E402

from nodes.routing import http_routes, websocket_routes  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_routes, re_path(r"", django_application)]),
        "websocket": URLRouter(websocket_routes),
    }
)
