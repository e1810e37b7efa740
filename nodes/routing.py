"""ASGI routes of the Socket.IO endpoint (filled in by the real-time layer)."""

http_routes: list = []
websocket_routes: list = []
