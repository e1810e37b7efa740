"""ASGI routes of the Socket.IO endpoint ``/socket.io/`` (long-polling over HTTP, and websocket)."""

from django.urls import re_path

from nodes.consumers import server
from vantage6.socketio.consumers import PollingConsumer, WebsocketConsumer

SOCKET_PATH = r"^socket\.io/?$"

http_routes: list = [re_path(SOCKET_PATH, PollingConsumer.as_asgi(server=server))]
socket_application = WebsocketConsumer.as_asgi(server=server)
websocket_routes: list = [re_path(SOCKET_PATH, socket_application)]  # type: ignore[arg-type]  # ASGI app
