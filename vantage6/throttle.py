"""Failures per client address within a sliding minute, which address a request comes from, and
whether it comes through a trusted proxy.

The counts live in the memory of one server process, bounded in size: each process of a cluster
counts the failures it sees itself.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0
# Client addresses tracked at once; the one not heard from the longest is forgotten first.
MAX_CLIENTS = 10_000

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def from_trusted_proxy(meta: Mapping[str, str], trusted_proxies: Iterable[IPNetwork]) -> bool:
    """Whether the peer of a request with ``meta`` is one of ``trusted_proxies``."""
    peer = _address(meta.get("REMOTE_ADDR", ""))
    return peer is not None and any(peer in proxy for proxy in trusted_proxies)


def client_address(meta: Mapping[str, str], trusted_proxies: Iterable[IPNetwork]) -> str:
    """The address a request comes from: the peer, or, when the peer is a trusted proxy, the last
    address of ``X-Forwarded-For`` that is not one (what a proxy appends cannot be forged by the client).

    IPv6 addresses stand for their /64, which one client usually holds whole.
    """
    proxies = tuple(trusted_proxies)
    peer = _address(meta.get("REMOTE_ADDR", ""))
    hops = meta.get("HTTP_X_FORWARDED_FOR", "").split(",")
    while peer is not None and any(peer in proxy for proxy in proxies) and hops:
        forwarded = _address(hops.pop())
        if forwarded is None:
            break  # not written by a proxy we trust: the trusted hop is the best we know
        peer = forwarded
    if peer is None:
        return meta.get("REMOTE_ADDR", "")
    if peer.version == 6:
        return str(ipaddress.ip_network(f"{peer}/64", strict=False))
    return str(peer)


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    noted: dict[str, float] = field(default_factory=dict)


class FailureLimiter:
    """At most ``limit`` failures (or attempts) per client within a sliding window: then
    ``retry_after`` (``attempt``) tells the client how long to wait. Also tells the first event of a
    kind per client and window (``first``), to record repeated events once."""

    def __init__(self, window: float = WINDOW_SECONDS, max_clients: int = MAX_CLIENTS) -> None:
        self.window = window
        self.max_clients = max_clients
        self.clock = time.monotonic
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def _client(self, key: str, now: float) -> _Client:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client()
            if len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(key)
        while client.failures and client.failures[0] <= now - self.window:
            client.failures.popleft()
        return client

    def retry_after(self, key: str, limit: int) -> int:
        """Whole seconds until ``key`` may try again; 0: now. ``limit`` 0 means no limit."""
        if not limit:
            return 0
        with self._lock:
            now = self.clock()
            failures = self._client(key, now).failures
            if len(failures) < limit:
                return 0
            return max(1, math.ceil(failures[-limit] + self.window - now))

    def fail(self, key: str, limit: int) -> None:
        """Count a failure of ``key`` (only the last ``limit`` are kept: no more are needed)."""
        if not limit:
            return
        with self._lock:
            now = self.clock()
            failures = self._client(key, now).failures
            failures.append(now)
            while len(failures) > limit:
                failures.popleft()

    def attempt(self, key: str, limit: int) -> int:
        """Count an attempt of ``key`` unless it is at ``limit``: then the whole seconds to wait
        (nothing counted); 0: counted. One step, so that a burst in parallel cannot pass the limit."""
        if not limit:
            return 0
        with self._lock:
            now = self.clock()
            failures = self._client(key, now).failures
            if len(failures) >= limit:
                return max(1, math.ceil(failures[-limit] + self.window - now))
            failures.append(now)
            return 0

    def first(self, key: str, kind: str) -> bool:
        """Whether this is the first ``kind`` of event of ``key`` within the window."""
        with self._lock:
            now = self.clock()
            client = self._client(key, now)
            if client.noted.get(kind, -math.inf) > now - self.window:
                return False
            # Kinds noted longer ago are forgotten, so that the notes of a client stay few.
            client.noted = {k: t for k, t in client.noted.items() if t > now - self.window}
            client.noted[kind] = now
            return True

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()
