"""The static files the server serves itself (admin, API docs), some of them HTML pages of this origin,
as a hostile page meets them: they cannot be framed or sniffed, as any other answer."""

from __future__ import annotations

import pytest

from tests.speed.test_handler import application, call  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "path",
    [
        "/static/drf_spectacular_sidecar/swagger-ui-dist/oauth2-redirect.html",
        "/static/admin/css/base.css",
        "/static/admin/no-such-file.js",
    ],
)
def test_static_files_cannot_be_framed_or_sniffed(application, path):  # noqa: F811 - the fixture
    status, headers, _, _ = call(application, path)
    assert status == (404 if "no-such" in path else 200)
    sent = dict(headers)
    assert sent["X-Frame-Options"] == "DENY"
    assert sent["X-Content-Type-Options"] == "nosniff"
    assert sent["Referrer-Policy"] == "same-origin"
