"""Failures per client address within a window, which address a request comes from, and whether it
comes through a trusted proxy.

The counts live in the database, so that every process and instance of a deployment shares them: a
client does not get another budget from each server it reaches through a load balancer.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable, Mapping

from django.db import connection

WINDOW_SECONDS = 60.0
# The table of the counts (its model: accounts.models.ClientLimit).
TABLE = "client_limit"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# An IPv6 client stands for its /64, and whoever holds a /48 (what a site is given) holds 65,536 of them,
# each with a budget of its own: the /48 also shares one, this many times a client's, so that a site's
# clients failing together are held back long before the /48 of an attacker would be.
BLOCK_BUDGETS = 16


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Some proxies name the client with its port (``203.0.113.7:51234``, ``[2001:db8::7]:51234``): read
    # as no address, every client behind them was the proxy, one client for every limit.
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
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


def client_block(client: str) -> str | None:
    """The /48 of an IPv6 client (a ``client_address``), which shares a budget of its clients; None for
    an IPv4 client, whose address is its budget alone."""
    try:
        network = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return None
    if network.version != 6:
        return None
    return str(network.supernet(new_prefix=48))


def scope_client_address(scope: dict, trusted_proxies: Iterable[IPNetwork]) -> str:
    """``client_address`` of an ASGI request (its peer, and the ``X-Forwarded-For`` lines joined)."""
    peer = scope.get("client")
    forwarded = [
        value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"
    ]
    meta = {"REMOTE_ADDR": str(peer[0]) if peer else "", "HTTP_X_FORWARDED_FOR": ",".join(forwarded)}
    return client_address(meta, trusted_proxies)


_COUNT = f"""
INSERT INTO {TABLE} (name, closes_at, hits) VALUES (%(name)s, %(closes)s, 1)
ON CONFLICT (name) DO UPDATE SET
    hits = CASE WHEN {TABLE}.closes_at <= %(now)s THEN 1 ELSE {TABLE}.hits + 1 END,
    closes_at = CASE WHEN {TABLE}.closes_at <= %(now)s THEN excluded.closes_at ELSE {TABLE}.closes_at END
WHERE {TABLE}.closes_at <= %(now)s OR {TABLE}.hits < %(limit)s
RETURNING hits, closes_at
"""
# Takes back a count of the window it was made in (none of a window opened since).
_UNCOUNT = f"UPDATE {TABLE} SET hits = hits - 1 WHERE name = %s AND closes_at = %s AND hits > 0"


class FailureLimiter:
    """At most ``limit`` failures (or attempts) per client within a window that opens at its first
    failure and lasts ``window`` seconds: then ``retry_after`` (``attempt``) tells the client how long
    to wait, until the window closes. Also tells the first event of a kind per client and window
    (``first``), to record repeated events once.

    One statement per check (of all the client's budgets) and one per count, in the database every
    server process shares. Unlike a sliding window, a client may fail ``limit`` times at the end of one
    window and again at the start of the next one: at most twice the limit within any window's time,
    whatever the number of servers.
    """

    def __init__(self, name: str, window: float = WINDOW_SECONDS) -> None:
        self.name = name
        self.window = window
        self.clock = time.time  # shared by the servers, unlike a monotonic clock

    def _wait(self, budgets: list[tuple[str, int]], now: float) -> int:
        """Whole seconds until none of ``budgets`` (keys and their limits) is at its limit; 0: now.
        One statement for all of them."""
        limits = {self._name(key): limit for key, limit in budgets}
        marks = ", ".join(["%s"] * len(limits))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT name, closes_at, hits FROM {TABLE} WHERE name IN ({marks})", list(limits))
            rows = cursor.fetchall()
        closes = [closes_at for name, closes_at, hits in rows if closes_at > now and hits >= limits[name]]
        return max(1, math.ceil(max(closes) - now)) if closes else 0

    def _count(self, key: str, limit: int, now: float, *, tidy: bool = True) -> float | None:
        """Count a failure of ``key`` unless it is at ``limit``: when its window closes if it counted,
        else None. ``tidy``: the first failure of a window also forgets the windows that closed (few,
        found by the index), so the table holds no more than the clients of the windows open now."""
        params: dict[str, str | float] = {
            "name": self._name(key),
            "closes": now + self.window,
            "now": now,
            "limit": limit,
        }
        with connection.cursor() as cursor:
            cursor.execute(_COUNT, params)
            row = cursor.fetchone()
            if row is None:
                return None
            if tidy and row[0] == 1:
                cursor.execute(f"DELETE FROM {TABLE} WHERE closes_at <= %s", [now])
        return row[1]

    def _uncount(self, key: str, closes_at: float) -> None:
        with connection.cursor() as cursor:
            cursor.execute(_UNCOUNT, [self._name(key), closes_at])

    def _name(self, key: str) -> str:
        return f"{self.name} {key}"

    @staticmethod
    def _budgets(key: str, limit: int) -> list[tuple[str, int]]:
        """The budgets a client ``key`` draws on: its own, and its IPv6 /48's (``BLOCK_BUDGETS``)."""
        block = client_block(key)
        return [(key, limit)] + ([(block, limit * BLOCK_BUDGETS)] if block is not None else [])

    def retry_after(self, key: str, limit: int) -> int:
        """Whole seconds until ``key`` may try again; 0: now. ``limit`` 0 means no limit."""
        if not limit:
            return 0
        return self._wait(self._budgets(key, limit), self.clock())

    def fail(self, key: str, limit: int) -> None:
        """Count a failure of ``key`` (none past ``limit``: the window closes as late anyway)."""
        if limit:
            now = self.clock()
            for name, budget in self._budgets(key, limit):
                self._count(name, budget, now)

    def attempt(self, key: str, limit: int) -> int:
        """Count an attempt of ``key`` unless one of its budgets is at its limit: then the whole seconds
        to wait, and the attempt counts in none of them (a client refused because its /48 is exhausted
        keeps its own budget for when the /48's window closes); 0: counted. One conditional statement
        per budget, so that a burst in parallel, on any number of servers, cannot pass it: a count is
        taken back only from an attempt refused, never from one let through."""
        if not limit:
            return 0
        now = self.clock()
        counted: list[tuple[str, float]] = []
        for name, budget in self._budgets(key, limit):
            closes_at = self._count(name, budget, now)
            if closes_at is None:
                for counted_name, counted_window in counted:
                    self._uncount(counted_name, counted_window)
                return max(1, self._wait([(name, budget)], now))
            counted.append((name, closes_at))
        return 0

    def first(self, key: str, kind: str) -> bool:
        """Whether this is the first ``kind`` of event of ``key`` within the window (noted along
        with a failure of ``key``, whose new window does the tidying)."""
        return self._count(f"{key} {kind}", 1, self.clock(), tidy=False) is not None
