"""Looking up an algorithm in an algorithm store, to pin the image a task runs to a digest."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

from vantage6.api.errors import bad_request


def algorithm_digest(store_url: str, image: str, server_url: str, authorization: str | None) -> str | None:
    """The digest the store records for ``image`` (None when it has none); 400 on any failure.

    Calls ``GET <store>/algorithm?image=<image>`` with a short timeout, so an unreachable or slow
    store is a clear 400 instead of a hanging request.
    """
    query = urllib.parse.urlencode({"image": image})
    request = urllib.request.Request(f"{store_url.rstrip('/')}/algorithm?{query}")
    request.add_header("server_url", server_url)
    request.add_header("Accept", "application/json")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=settings.ALGORITHM_STORE_TIMEOUT_SECONDS) as response:
            body = json.loads(response.read(1024 * 1024) or b"null")
    except urllib.error.HTTPError as exc:
        raise bad_request(
            f"Algorithm store error: the store answered {exc.code} for image '{image}'"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise bad_request(f"Algorithm store error: could not look up image '{image}' ({exc})") from None
    entries = body.get("data") if isinstance(body, dict) else body
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise bad_request(f"Algorithm store error: image '{image}' is not in the algorithm store")
    digest = entries[0].get("digest")
    return digest if isinstance(digest, str) and digest else None
