"""The endpoints outside the resources: health, version, the API schema and docs, the admin."""

from __future__ import annotations

import pytest
import yaml

from vantage6 import VANTAGE6_VERSION


def test_health_reports_the_database(api, db):  # noqa: ARG001
    response = api.get("/api/health")
    assert response.status_code == 200
    assert response.json()["database"] is True  # and RabbitMQ's state when it is configured


def test_version_is_the_vantage6_release(api):
    response = api.get("/api/version")
    assert response.status_code == 200
    assert response.json() == {"version": VANTAGE6_VERSION} == {"version": "4.15.2"}


def test_schema_is_an_openapi_document_of_the_api(api, db):  # noqa: ARG001
    response = api.get("/api/schema")
    assert response.status_code == 200
    schema = yaml.load(response.content, yaml.CSafeLoader)  # libyaml's safe loader: the same, sooner
    assert schema["openapi"].startswith("3.")
    assert "/api/rule" in schema["paths"]
    assert "/api/rule/{id}" in schema["paths"]


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc", "/admin/login/"])
def test_html_pages(api, db, path):  # noqa: ARG001
    response = api.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("method", ["get", "head"])
def test_robots_txt_at_the_root_keeps_crawlers_out(api, db, method):  # noqa: ARG001
    response = getattr(api, method)("/robots.txt")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain"
    if method == "get":
        assert response.content == b"User-agent: *\nDisallow: /\n"


def test_robots_txt_takes_no_writes(api, db):  # noqa: ARG001
    response = api.post("/robots.txt", {"x": 1}, format="json")
    assert response.status_code == 405
    assert "msg" in response.json()
