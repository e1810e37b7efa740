"""Calls to a remote algorithm store: registering this server there, removing it, looking up images.

The standard library is enough for these few JSON calls. Every call ends within a short time
(``ALGORITHM_STORE_TIMEOUT_SECONDS``, for the whole call, the name lookup included); a store that
cannot be reached is a 404 as in vantage6.

A store URL is chosen by an administrator, so these calls must not become a way to reach this
server's own network: the host is resolved first and loopback, private, link-local, multicast and
reserved addresses are refused (unless ``ALGORITHM_STORE_ALLOW_PRIVATE``), the connection goes to the
address that was checked (a second lookup could answer differently), redirects are not followed, and
only a store's own ``msg`` is passed on in an error, never another body.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from django.conf import settings

from vantage6.api.errors import ApiError, bad_request, not_found

if TYPE_CHECKING:
    from accounts.permissions import Principal
    from collaborations.models import AlgorithmStore

# A store's answers are small; never read more than this.
MAX_BODY_BYTES = 1_000_000
# The part of a store's error message passed on to our caller.
MAX_MESSAGE_CHARS = 500
# Statuses of POST /vantage6-server meaning "registered" and "was already registered".
REGISTERED = (201, 208)
# Calls to stores of a process at once: each holds a request thread (of ``vantage6.handler.MAX_THREADS``)
# until the store answers or its deadline, so a store that never answers, called over and over by the
# collaboration admin who linked it, would otherwise take them all from every other client.
MAX_CALLS = 8
_calls = threading.BoundedSemaphore(MAX_CALLS)
# Of those, the calls of one caller at once: one who sends many calls to a store that never answers
# takes this many, not every one of the others'.
MAX_CALLS_PER_CALLER = 2
_calls_by_caller: Counter[tuple[str, int | None]] = Counter()
_calls_by_caller_lock = threading.Lock()


class StoresBusy(ApiError):
    """The store calls are all under way: ``MAX_CALLS`` of this process, a 503 whatever the call was for;
    or (``own``) ``MAX_CALLS_PER_CALLER`` of the caller, a 429."""

    def __init__(self, *, own: bool = False) -> None:
        if own:
            super().__init__(
                429, "Too many of your calls to algorithm stores at once; try again when they ended"
            )
        else:
            super().__init__(503, "Too many calls to algorithm stores at once; try again later")


@contextlib.contextmanager
def _call_of(caller: Principal) -> Iterator[None]:
    """One of the process's store calls and one of ``caller``'s, or at once (waiting would hold this
    thread as well) ``StoresBusy`` when either has none left."""
    key = (caller.kind, caller.id)
    with _calls_by_caller_lock:
        if _calls_by_caller[key] >= MAX_CALLS_PER_CALLER:
            raise StoresBusy(own=True)
        if not _calls.acquire(blocking=False):
            raise StoresBusy
        _calls_by_caller[key] += 1
    try:
        yield
    finally:
        with _calls_by_caller_lock:
            _calls_by_caller[key] -= 1
            if not _calls_by_caller[key]:
                del _calls_by_caller[key]
        _calls.release()


@dataclass(frozen=True)
class StoreResponse:
    status: int
    body: object


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address checked beforehand; the Host header still names the store's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, over TLS: the certificate is verified against the store's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, in the system's order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """Whether an address is on the public internet (an IPv4 one inside IPv6 counts as itself)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def _resolve_by(deadline: float, host: str, port: int) -> list[str]:
    """``resolve``, waited for until ``deadline`` (TimeoutError): the system resolver's own timeouts (per
    DNS server and attempt) add up to minutes. The lookup runs in a thread of its own, so that one left
    waiting for the resolver keeps no later lookup waiting. Such threads stay few: ``MAX_CALLS`` calls at
    once start them, and each ends when the resolver gives up."""
    lookup: Future[list[str]] = Future()

    def run() -> None:
        try:
            lookup.set_result(resolve(host, port))
        except (OSError, UnicodeError) as exc:
            lookup.set_exception(exc)

    threading.Thread(target=run, name="store_lookup", daemon=True).start()
    return lookup.result(timeout=max(0.0, deadline - time.monotonic()))


def _checked_addresses(url: str, host: str, port: int, deadline: float) -> list[str]:
    try:
        addresses = _resolve_by(deadline, host, port)
    except (OSError, UnicodeError):  # TimeoutError among them: the lookup outlasted the call's deadline
        raise _unreachable(url) from None
    if not settings.ALGORITHM_STORE_ALLOW_PRIVATE and not all(map(is_public_address, addresses)):
        raise bad_request(
            f"Algorithm store URL {url} points to a loopback, private or otherwise non-public address; "
            "this server only calls algorithm stores on the public internet."
        )
    return addresses


def _unreachable(url: str) -> ApiError:
    return not_found(
        f"Algorithm store cannot be reached at {url}. Make sure that it is online and that its "
        "URL is correct (including the API path, e.g. /api)."
    )


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested beyond the decoder's reach
        return None  # not a store's answer; never shown to anyone


def store_request(
    method: str,
    url: str,
    *,
    caller: Principal,
    body: object = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> StoreResponse:
    """One HTTP call to a store at a public address, for ``caller``; a store that cannot be reached is a
    404, and with ``MAX_CALLS`` under way in this process (or ``MAX_CALLS_PER_CALLER`` of the caller's)
    the call is a 503 (a 429) at once.

    A redirect is answered as it is (a 3xx), not followed: it could lead anywhere. A store registered
    at ``localhost`` that does not answer there is tried once more at ``DEV_HOST_URI``: in development
    the store runs beside a server that may itself be in a container.
    """
    with _call_of(caller):
        deadline = time.monotonic() + settings.ALGORITHM_STORE_TIMEOUT_SECONDS  # of both tries
        try:
            return _request_once(method, url, body=body, headers=headers, params=params, deadline=deadline)
        except ApiError:
            retry_url = _on_dev_host(url)
            if retry_url is None:
                raise
            return _request_once(
                method, retry_url, body=body, headers=headers, params=params, deadline=deadline
            )


def _on_dev_host(url: str) -> str | None:
    """``url`` with its ``localhost`` replaced by the host of ``DEV_HOST_URI``, if both apply."""
    parts = urlsplit(url)
    if not settings.DEV_HOST_URI or (parts.hostname or "").lower() != "localhost":
        return None
    dev = urlsplit(settings.DEV_HOST_URI if "//" in settings.DEV_HOST_URI else f"//{settings.DEV_HOST_URI}")
    if not dev.hostname:
        return None
    netloc = dev.hostname + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _request_once(
    method: str,
    url: str,
    *,
    body: object,
    headers: dict[str, str] | None,
    params: dict[str, str] | None,
    deadline: float,
) -> StoreResponse:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _unreachable(url) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _unreachable(url)
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    query = "&".join(part for part in (parts.query, urlencode(params or {})) if part)
    target = (parts.path or "/") + (f"?{query}" if query else "")
    payload = None if body is None else json.dumps(body).encode()
    all_headers = {"Accept": "application/json", "Content-Type": "application/json", **(headers or {})}
    for address in _checked_addresses(url, parts.hostname, port, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection = connection_class(parts.hostname, port, address, timeout=remaining)
        try:
            connection.connect()
        except OSError:
            connection.close()
            continue  # refused or timed out: the store's next address, if it has one
        # The socket's timeout bounds each read only: a store sending a byte at a time would hold this
        # request's thread for as long as it likes, so the connection is cut at the deadline.
        cutoff = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (connection.sock,))
        cutoff.start()
        try:
            connection.request(method, target, body=payload, headers=all_headers)
            response = connection.getresponse()
            raw = response.read(MAX_BODY_BYTES + 1)
        except (OSError, ValueError, http.client.HTTPException):
            raise _unreachable(url) from None  # timed out, cut, or not HTTP at all
        finally:
            cutoff.cancel()
            connection.close()
        if len(raw) > MAX_BODY_BYTES:  # not an answer of a store: nothing of it is taken
            raise ApiError(502, f"Algorithm store error: its answer is longer than {MAX_BODY_BYTES} bytes")
        return StoreResponse(response.status, _decode(raw))
    raise _unreachable(url)


def _cut(sock: socket.socket) -> None:
    """Ends a store connection's reads and writes from another thread (a TLS socket's too: its
    ``shutdown`` would first drop the TLS state that a read in progress uses)."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def store_error(response: StoreResponse) -> ApiError:
    """The store's failure as our answer, with the store's own status (as vantage6 passes it on),
    but a store's 500 is a 502 here.

    Only the ``msg`` of a store's JSON answer is passed on: whatever else answered is not shown.
    """
    body = response.body
    message = body.get("msg") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = f"the store answered with status {response.status}"
    # A 3xx is no answer of ours, and our own 500 would say that this server failed.
    status = response.status if 400 <= response.status < 600 and response.status != 500 else 502
    return ApiError(status, f"Algorithm store error: {message[:MAX_MESSAGE_CHARS]}")


def this_server_url(given: str | None) -> str:
    """This server's API URL as stores know it: the request's ``server_url``, else ``V6_SERVER_URL``
    with the API path (registering, looking up images and unregistering must all name the same URL)."""
    if given:
        return given.rstrip("/")
    if settings.SERVER_URL:
        url = settings.SERVER_URL
        return url if url.endswith(settings.API_PATH) else f"{url}{settings.API_PATH}"
    raise bad_request(
        "No server URL given: send server_url, or configure the public URL of this server (V6_SERVER_URL)."
    )


def user_authorization(store: AlgorithmStore, authorization: str | None) -> str | None:
    """The user's credential to send to ``store``: only a store the operator trusts receives it.

    Trusted are the stores linked by a global administrator and the URLs in
    ``ALGORITHM_STORE_TRUSTED``; any other store was chosen by someone who must not collect the
    tokens of other users, so it is called without a credential.
    """
    trusted = store.trusted or store.url.rstrip("/") in settings.ALGORITHM_STORE_TRUSTED
    return authorization if trusted else None


def _headers(server_url: str, authorization: str | None) -> dict[str, str]:
    headers = {"server_url": server_url}
    if authorization:
        headers["Authorization"] = authorization
    return headers


def _store_is_public(store_url: str, caller: Principal) -> bool:
    response = store_request("GET", f"{store_url}/policy/public", caller=caller)
    return (
        response.status == 200
        and isinstance(response.body, dict)
        and response.body.get("algorithm_view") == "public"
    )


def register_server(
    *, store_url: str, server_url: str, force: bool, authorization: str | None, caller: Principal
) -> None:
    """Whitelist this server at the store; a refusal is fine when the store's algorithms are public."""
    response = store_request(
        "POST",
        f"{store_url}/vantage6-server",
        caller=caller,
        body={"url": server_url, "force": force},
        headers=_headers(server_url, authorization),
    )
    if response.status in REGISTERED:
        return
    if response.status == 403 and _store_is_public(store_url, caller):
        return
    raise store_error(response)


def unregister_server(
    *, store_url: str, server_url: str, authorization: str | None, caller: Principal
) -> None:
    """Remove this server from the store's whitelist: its entry, the first the store lists for its URL.

    A store that never listed it is fine, and so is one that wants a credential when none may be
    sent to it (see ``user_authorization``): the link is removed here all the same. One entry (vantage6
    removes every one listed, where a store lists one): a store chosen by a collaboration administrator
    that listed thousands had this request call it once for each, holding its thread as long as it liked.
    """
    headers = _headers(server_url, authorization)
    response = store_request(
        "GET", f"{store_url}/vantage6-server", caller=caller, headers=headers, params={"url": server_url}
    )
    if response.status == 403 or (response.status == 401 and authorization is None):
        return
    if response.status != 200:
        raise store_error(response)
    entries = response.body.get("data", []) if isinstance(response.body, dict) else response.body
    ours = (
        entry
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("id"), int)
        and entry.get("url", server_url) == server_url
    )
    if (entry := next(ours, None)) is None:
        return
    deleted = store_request(
        "DELETE", f"{store_url}/vantage6-server/{entry['id']}", caller=caller, headers=headers
    )
    if not 200 <= deleted.status < 300:
        raise store_error(deleted)


def algorithm_digest(
    *, store_url: str, image: str, server_url: str, authorization: str | None, caller: Principal
) -> str | None:
    """The digest the store records for ``image`` (None when it has none); 400 on any failure.

    Used to pin the image of a task to a digest; any failure of the store is a 400 for the task.
    """
    try:
        response = store_request(
            "GET",
            f"{store_url}/algorithm",
            caller=caller,
            headers=_headers(server_url, authorization),
            params={"image": image},
        )
    except StoresBusy:
        raise
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
