#!/usr/bin/env python3
"""A free TCP port on 127.0.0.1 for a server to listen on, outside the kernel's ephemeral range.

A port the kernel hands out for ``bind(0)`` comes from the same range as the local ports of outgoing
connections: between choosing it and the server's bind, any client on the machine may take it, and the
server (or RabbitMQ's epmd, or its distribution port) then fails to start. A port below that range is
never taken that way.

    scripts/free_port.py [PREFERRED [TAKEN...]]    # prints PREFERRED if free, else another port
"""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Collection
from pathlib import Path

LOWEST = 10000  # below: well-known services' ports
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return low, high


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(preferred: int = 0, taken: Collection[int] = ()) -> int:
    """``preferred`` if it is free and not in ``taken``, else a free port outside the ephemeral range."""
    if preferred and preferred not in taken and is_free(preferred):
        return preferred
    low, high = _ephemeral_range()
    outside = [*range(LOWEST, low), *range(high + 1, 65536)]
    if not outside:  # the whole range is ephemeral: the kernel's choice is all there is
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    while True:
        port = random.choice(outside)
        if port not in taken and is_free(port):
            return port


if __name__ == "__main__":
    preferred, *taken = (int(arg) for arg in sys.argv[1:]) if len(sys.argv) > 1 else (0,)
    print(free_port(preferred, set(taken)))
