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
# Counts an attempt in every budget (``%(budgets)s``: (name, limit) rows) if none is at its limit, else in
# none: the rows at their limit come back unchanged, with the refusal (``counts`` false), for the wait. A
# refused attempt makes no row of its own (should a row it saw at its limit be tidied away meanwhile, the
# one it makes is closed already). Rows are written in the order of their names, so that two attempts
# writing the same rows never wait for each other in turn.
_ATTEMPT = f"""
WITH budget (name, most) AS (VALUES %(budgets)s),
spent AS MATERIALIZED (
    SELECT budget.name FROM budget JOIN {TABLE} ON {TABLE}.name = budget.name
    WHERE {TABLE}.closes_at > %%(now)s AND {TABLE}.hits >= budget.most
),
room (counts) AS MATERIALIZED (SELECT NOT EXISTS (SELECT 1 FROM spent))
INSERT INTO {TABLE} (name, closes_at, hits)
SELECT budget.name, CASE WHEN counts THEN %%(closes)s ELSE %%(now)s END, CASE WHEN counts THEN 1 ELSE 0 END
FROM budget, room WHERE counts OR budget.name IN (SELECT name FROM spent)
ORDER BY budget.name
ON CONFLICT (name) DO UPDATE SET
    hits = CASE
        WHEN excluded.hits = 0 THEN {TABLE}.hits
        WHEN {TABLE}.closes_at <= %%(now)s THEN 1
        ELSE {TABLE}.hits + 1
    END,
    closes_at = CASE
        WHEN excluded.hits = 1 AND {TABLE}.closes_at <= %%(now)s THEN excluded.closes_at
        ELSE {TABLE}.closes_at
    END
WHERE excluded.hits = 0 OR {TABLE}.closes_at <= %%(now)s
    OR {TABLE}.hits < (SELECT most FROM budget WHERE budget.name = excluded.name)
RETURNING name, hits, closes_at, (SELECT counts FROM room)
"""
# Takes back a count of the window it was made in (none of a window opened since).
_UNCOUNT = f"UPDATE {TABLE} SET hits = hits - 1 WHERE name = %s AND closes_at = %s AND hits > 0"


def _tidy(now: float) -> None:
    """Forget the windows closed at ``now`` (few, found by the index), so that the table holds no more
    than the clients of the windows open now: done by the first count of a window."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE closes_at <= %s", [now])


class FailureLimiter:
    """At most ``limit`` failures (or attempts) per client within a window that opens at its first
    failure and lasts ``window`` seconds: then ``retry_after`` (``attempt``) tells the client how long
    to wait, until the window closes. Also tells the first event of a kind per client and window
    (``first``), to record repeated events once.

    One statement per check (of all the client's budgets), per count of a failure in each budget and per
    attempt (in all of them), in the database every server process shares. Unlike a sliding window, a
    client may fail ``limit`` times at the end of one window and again at the start of the next one: at
    most twice the limit within any window's time, whatever the number of servers.
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
            _tidy(now)
        return row[1]

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
        keeps its own budget for when the /48's window closes); 0: counted. One statement for all
        budgets (``_ATTEMPT``), then, when it opened a window, the tidying (``_tidy``).

        The statement decides on the rows as it read them, and counts in a row only while it has room as
        the row stands when written: of a burst in parallel, on any number of servers, none passes a
        budget. Where a parallel attempt took a budget's last count in between, this one counted in the
        other budgets alone: it takes those counts back (a count is taken back only from an attempt
        refused) and is refused."""
        if not limit:
            return 0
        now = self.clock()
        budgets = self._budgets(key, limit)
        params: dict[str, str | float | int] = {"now": now, "closes": now + self.window}
        for n, (name, most) in enumerate(budgets):
            params.update({f"name{n}": self._name(name), f"most{n}": most})
        rows_sql = ", ".join(f"(%(name{n})s, %(most{n})s)" for n in range(len(budgets)))
        with connection.cursor() as cursor:
            cursor.execute(_ATTEMPT % {"budgets": rows_sql}, params)
            rows = cursor.fetchall()
        if rows and not rows[0][3]:
            return max(1, math.ceil(max(closes_at for _, _, closes_at, _ in rows) - now))
        if len(rows) < len(budgets):  # a parallel attempt took the last count of one first
            with connection.cursor() as cursor:
                for name, _, closes_at, _ in rows:
                    cursor.execute(_UNCOUNT, [name, closes_at])
            return max(1, self._wait(budgets, now))
        if any(hits == 1 for _, hits, _, _ in rows):
            _tidy(now)
        return 0

    def first(self, key: str, kind: str) -> bool:
        """Whether this is the first ``kind`` of event of ``key`` within the window (noted along
        with a failure of ``key``, whose new window does the tidying)."""
        return self._count(f"{key} {kind}", 1, self.clock(), tidy=False) is not None
