"""A node as it talks to a live server over REST: its login with the API key, then calls with its token."""

from __future__ import annotations

import requests


class RestNode:
    def __init__(self, api: str, api_key: str) -> None:
        self.api = api  # the server's URL up to and with /api
        response = requests.post(f"{api}/token/node", json={"api_key": api_key}, timeout=10)
        assert response.status_code == 200, response.text
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, f"{self.api}/{path}", headers=self.headers, timeout=10, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()
