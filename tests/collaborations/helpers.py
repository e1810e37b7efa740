"""Helpers of the organization, collaboration, study, store and node tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.factories import bearer, make_task, make_user

# The built-in roles a person can hold, from least to most powerful.
ROLES = ["Viewer", "Researcher", "Organization Admin", "Collaboration Admin", "Root"]


def headers_of(org, *roles: str) -> dict[str, str]:
    """Request headers of a new user of ``org`` holding ``roles``."""
    return bearer(make_user(org, *roles))


def ref(resource: str, pk: int) -> dict:
    return {"id": pk, "link": f"/api/{resource}/{pk}", "methods": ["GET", "PATCH", "DELETE"]}


def ids(response) -> list[int]:
    return [row["id"] for row in response.json()["data"]]


class FakeStore:
    """An algorithm store on a local port: records every request, answers from ``routes``.

    ``routes`` maps ``(method, path)`` to ``(status, body)`` or ``(status, body, headers)``, or to a
    callable returning that; paths are relative to the store URL (which ends in ``/api``) and have no
    query string. A ``bytes`` body is sent as it is, any other as JSON.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[dict] = []
        self.routes: dict[tuple[str, str], tuple[int, object] | Callable[[], tuple[int, object]]] = {}
        store = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                path = path.removeprefix("/api")
                store.requests.append(
                    {
                        "method": self.command,
                        "path": path,
                        "query": query,
                        "headers": {key.lower(): value for key, value in self.headers.items()},
                        "body": json.loads(raw) if raw else None,
                    }
                )
                answer = store.routes.get((self.command, path), (404, {"msg": "not found"}))
                status, body, *extra = answer() if callable(answer) else answer
                raw_body = isinstance(body, bytes)
                payload = body if raw_body else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if raw_body else "application/json")
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_port}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeStore:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def container_headers(node) -> dict[str, str]:
    """Request headers of an algorithm container started by ``node`` in its collaboration, for a new
    task that still runs there."""
    task = make_task(node.collaboration, node.organization, node.organization, image="x")
    identity = {
        "client_type": "container", "node_id": node.pk, "node_generation": node.token_generation,
        "organization_id": node.organization_id,
        "collaboration_id": node.collaboration_id, "task_id": task.pk, "image": "x", "databases": [],
    }  # fmt: skip
    return bearer(identity)
