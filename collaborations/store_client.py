"""Calls to a remote algorithm store: registering this server there and removing it again.

The standard library is enough for these few JSON calls. Every call has a short timeout
(``ALGORITHM_STORE_TIMEOUT_SECONDS``); a store that cannot be reached is a 404 as in vantage6,
and an answer of the store that is not a success is passed on as ``Algorithm store error: ...``.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings

from vantage6.api.errors import ApiError, bad_request, not_found

# A store's answers are small; never read more than this.
MAX_BODY_BYTES = 1_000_000
# Statuses of POST /vantage6-server meaning "registered" and "was already registered".
REGISTERED = (201, 208)


@dataclass(frozen=True)
class StoreResponse:
    status: int
    body: object


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def store_request(
    method: str,
    url: str,
    *,
    body: object = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> StoreResponse:
    """One HTTP call to a store; a store that cannot be reached is a 404."""
    if params:
        url = f"{url}?{urlencode(params)}"
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.ALGORITHM_STORE_TIMEOUT_SECONDS) as response:
            return StoreResponse(response.status, _decode(response.read(MAX_BODY_BYTES)))
    except urllib.error.HTTPError as exc:
        with exc:
            return StoreResponse(exc.code, _decode(exc.read(MAX_BODY_BYTES)))
    except (OSError, ValueError, http.client.HTTPException):
        # Refused, timed out, unresolvable, not HTTP at all: the store is not there.
        raise not_found(
            f"Algorithm store cannot be reached at {url}. Make sure that it is online and that its "
            "URL is correct (including the API path, e.g. /api)."
        ) from None


def store_error(response: StoreResponse) -> ApiError:
    """The store's failure as our answer; its status is kept, but a store crash is a 502 here."""
    body = response.body
    detail = body.get("msg", body) if isinstance(body, dict) else body
    status = response.status if 400 <= response.status < 500 else 502
    return ApiError(status, f"Algorithm store error: {str(detail)[:500]}")


def _headers(server_url: str, authorization: str | None) -> dict[str, str]:
    headers = {"server_url": server_url}
    if authorization:
        headers["Authorization"] = authorization
    return headers


def _store_is_public(store_url: str) -> bool:
    response = store_request("GET", f"{store_url}/policy/public")
    return (
        response.status == 200
        and isinstance(response.body, dict)
        and response.body.get("algorithm_view") == "public"
    )


def register_server(*, store_url: str, server_url: str, force: bool, authorization: str | None) -> None:
    """Whitelist this server at the store; a refusal is fine when the store's algorithms are public."""
    response = store_request(
        "POST",
        f"{store_url}/vantage6-server",
        body={"url": server_url, "force": force},
        headers=_headers(server_url, authorization),
    )
    if response.status in REGISTERED:
        return
    if response.status == 403 and _store_is_public(store_url):
        return
    raise store_error(response)


def unregister_server(*, store_url: str, server_url: str, authorization: str | None) -> None:
    """Remove this server from the store's whitelist (a store that never listed it is fine)."""
    headers = _headers(server_url, authorization)
    response = store_request(
        "GET", f"{store_url}/vantage6-server", headers=headers, params={"url": server_url}
    )
    if response.status == 403:  # not whitelisted there
        return
    if response.status != 200:
        raise store_error(response)
    entries = response.body.get("data", []) if isinstance(response.body, dict) else response.body
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        if entry.get("url", server_url) != server_url:
            continue
        deleted = store_request("DELETE", f"{store_url}/vantage6-server/{entry['id']}", headers=headers)
        if not 200 <= deleted.status < 300:
            raise store_error(deleted)


def algorithm_digest(*, store_url: str, image: str, server_url: str, authorization: str | None) -> str | None:
    """The digest the store records for ``image`` (None when it has none); 400 on any failure.

    Used to pin the image of a task to a digest; any failure of the store is a 400 for the task.
    """
    try:
        response = store_request(
            "GET",
            f"{store_url}/algorithm",
            headers=_headers(server_url, authorization),
            params={"image": image},
        )
    except ApiError as exc:
        raise bad_request(f"Algorithm store error: could not look up image '{image}' ({exc.msg})") from None
    if response.status != 200:
        raise bad_request(f"Algorithm store error: the store answered {response.status} for image '{image}'")
    entries = response.body.get("data") if isinstance(response.body, dict) else response.body
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise bad_request(f"Algorithm store error: image '{image}' is not in the algorithm store")
    digest = entries[0].get("digest")
    return digest if isinstance(digest, str) and digest else None
