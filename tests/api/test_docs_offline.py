"""The API docs pages work without internet: a headless browser that can reach only this server
renders the operations of the schema."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import requires_services

# Every host name but the local server's address fails to resolve: a page that needs a CDN stays blank.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"


def _rendered(url: str, profile: str) -> str:
    """The page's DOM after its scripts ran, in a browser without network access beyond this server."""
    result = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
            "--disable-background-networking", f"--user-data-dir={profile}", OFFLINE,
            "--virtual-time-budget=15000", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout


@pytest.mark.parametrize(
    ("page", "rendered_operation"),
    [
        # Swagger UI: one block per operation, with its path.
        ("docs", 'class="opblock-summary-path" data-path="/api/rule/{id}"'),
        # ReDoc: one menu entry per operation, and the path in its panel.
        ("redoc", "/api/rule/{id}"),
    ],
)
@requires_services("chromium")
def test_docs_page_renders_the_operations_without_internet(live_server, tmp_path, page, rendered_operation):
    html = _rendered(f"{live_server.url}/api/{page}", str(tmp_path))
    assert rendered_operation in html
    assert "/api/task" in html


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_docs_pages_load_nothing_from_other_hosts(api, db, page):  # noqa: ARG001
    response = api.get(f"/api/{page}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn." not in html and "https://" not in html and "http://" not in html
    assert "/static/drf_spectacular_sidecar/" in html
