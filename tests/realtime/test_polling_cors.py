"""Long-polling answers follow the API's CORS policy: pages of an allowed origin read them, never with
credentials (a page of any origin would otherwise read answers its browser authenticated by the admin
site's session cookie)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.realtime.helpers import make_user, token
from tests.realtime.live import Daphne

pytestmark = pytest.mark.live

UI = "https://ui.example"
FOREIGN = "https://evil.example"


@pytest.fixture(scope="module")
def restricted(live_db, live_folder):
    """A server whose API allows the origin ``UI`` only."""
    daphne = Daphne(live_db.process_env(V6_CORS_ALLOWED_ORIGINS=UI), live_folder)
    yield daphne
    daphne.stop()


def _cors(response: requests.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith(("Access-", "Vary"))}


def test_the_ui_connects_from_its_allowed_origin_with_polling(restricted, live_world):
    url = f"{restricted.url}/socket.io/"
    bearer = token(make_user(live_world.org_a, event_scope="COLLABORATION"))
    origin = {"Origin": UI}
    preflight = requests.options(
        url,
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=10,
    )
    headers = {**origin, "Authorization": f"Bearer {bearer}"}
    opened = requests.get(url, params={"EIO": "4", "transport": "polling"}, headers=headers, timeout=10)
    session = {"EIO": "4", "transport": "polling", "sid": json.loads(opened.text[1:])["sid"]}
    sent = requests.post(url, params=session, data="40/tasks,{}", headers=origin, timeout=10)
    polled = requests.get(url, params=session, headers=origin, timeout=10)

    assert [preflight.status_code, opened.status_code, sent.status_code] == [200, 200, 200]
    assert polled.text.startswith('40/tasks,{"sid":')
    assert _cors(preflight) == {
        "Access-Control-Allow-Origin": UI,
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "OPTIONS, GET, POST",
        "Access-Control-Allow-Headers": "authorization",
    }
    for answer in (opened, sent, polled):
        assert _cors(answer) == {"Access-Control-Allow-Origin": UI, "Vary": "Origin"}


def test_a_page_of_another_origin_reads_no_polling_answer_with_a_cookie(restricted):
    headers = {"Origin": FOREIGN, "Cookie": "sessionid=admin-session"}
    opened = requests.get(
        f"{restricted.url}/socket.io/",
        params={"EIO": "4", "transport": "polling"},
        headers=headers,
        timeout=10,
    )

    assert opened.status_code == 200
    # Nothing that lets the page read it; varying by Origin, a shared cache never gives it to the UI.
    assert _cors(opened) == {"Vary": "Origin"}


def test_with_every_origin_allowed_no_polling_answer_allows_credentials(server):
    headers = {"Origin": FOREIGN, "Cookie": "sessionid=admin-session"}
    opened = requests.get(
        f"{server.url}/socket.io/", params={"EIO": "4", "transport": "polling"}, headers=headers, timeout=10
    )

    assert opened.status_code == 200
    # No Access-Control-Allow-Credentials: a browser exposes no credentialed answer to a wildcard.
    assert _cors(opened) == {"Access-Control-Allow-Origin": "*"}


@pytest.mark.parametrize("origin", [None, UI], ids=["none", "one"])
def test_under_any_origin_every_polling_answer_fits_every_origin(server, origin):
    """The default, ``*``: each answer allows any origin, one asked without Origin too, so a shared cache
    may give any of them to any page, without a Vary."""
    url = f"{server.url}/socket.io/"
    params = {"EIO": "4", "transport": "polling"}
    headers = {"Origin": origin} if origin else {}
    answers = [
        requests.get(url, params=params, headers=headers, timeout=10),  # opened
        requests.get(url, params={**params, "sid": "unknown"}, headers=headers, timeout=10),
        requests.options(url, params=params, headers=headers, timeout=10),  # preflight
    ]

    assert [answer.status_code for answer in answers] == [200, 400, 200]
    assert [answer.headers.get("Access-Control-Allow-Origin") for answer in answers] == ["*"] * 3
    assert not any("Vary" in answer.headers for answer in answers)
