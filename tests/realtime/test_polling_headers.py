"""Every long-polling answer carries the security headers of the server's other answers."""

from __future__ import annotations

import json

import pytest
import requests

pytestmark = pytest.mark.live

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def _secured(response: requests.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in SECURITY_HEADERS.items())


def test_polling_answers_carry_the_security_headers(server):
    url = f"{server.url}/socket.io/"
    opened = requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=10)
    sid = json.loads(opened.text[1:])["sid"]
    session = {"EIO": "4", "transport": "polling", "sid": sid}
    answers = {
        "handshake": opened,
        "post": requests.post(url, params=session, data="6", timeout=10),
        "poll": requests.get(url, params=session, timeout=10),
        "error": requests.get(url, params={"EIO": "3", "transport": "polling"}, timeout=10),
        "unknown session": requests.get(url, params={**session, "sid": "no-such-session"}, timeout=10),
        "preflight": requests.options(url, headers={"Origin": "https://ui.example"}, timeout=10),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "handshake": 200,
        "post": 200,
        "poll": 200,
        "error": 400,
        "unknown session": 400,
        "preflight": 200,
    }
    assert [name for name, answer in answers.items() if not _secured(answer)] == []
