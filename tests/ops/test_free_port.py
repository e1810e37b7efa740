"""The port picker of the scripts and the live tests: never a port the kernel may hand to a client."""

from __future__ import annotations

import socket
import subprocess
import sys

from scripts import free_port as picker
from tests.realtime.live import ROOT


def test_a_chosen_port_lies_outside_the_ephemeral_range_and_is_free():
    low, high = picker._ephemeral_range()
    ports = {picker.free_port() for _ in range(50)}
    assert all(not low <= port <= high for port in ports), ports
    assert all(picker.is_free(port) for port in ports)


def test_the_preferred_port_unless_busy_or_taken():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        busy_port = busy.getsockname()[1]
        assert picker.free_port(busy_port) != busy_port
    free = picker.free_port()
    assert picker.free_port(free) == free
    assert picker.free_port(free, taken={free}) != free


def test_the_script_prints_the_preferred_port_or_another():
    free = picker.free_port()
    run = [sys.executable, str(ROOT / "scripts" / "free_port.py")]
    assert subprocess.run([*run, str(free)], capture_output=True, text=True, check=True).stdout == f"{free}\n"
    other = subprocess.run([*run, str(free), str(free)], capture_output=True, text=True, check=True).stdout
    assert int(other) != free
