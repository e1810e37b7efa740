"""The upgrade of a long-polling session to a websocket, as a client makes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import websocket

from tests.realtime.helpers import PollingSession


@contextmanager
def upgraded(polling: PollingSession, port: int) -> Iterator[websocket.WebSocket]:
    """A websocket to the server on ``port`` that takes over ``polling``'s session: probed while a GET
    of the session waits (it is answered with a noop), upgraded, and connected to ``/tasks``; the
    events of that connection are the caller's to read."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&sid={polling.sid}", timeout=10
    )
    waiting: list[list[str]] = []
    get = threading.Thread(target=lambda: waiting.append(polling.poll()))
    get.start()
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        get.join(10)
        assert waiting == [["6"]]
        ws.send("5")
        ws.send("40/tasks,{}")
        answer = ws.recv()
        while answer == "2":  # the server's ping (every 2 s here) may come before a late acknowledgement
            ws.send("3")
            answer = ws.recv()
        assert answer.startswith('40/tasks,{"sid":')
        yield ws
    finally:
        ws.close()
