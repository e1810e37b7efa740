"""RFC 6455 conformance of the server's websockets beyond the basic violations (test_websocket_frames):
fragmentation, lengths, close codes, and clients that flood without reading."""

from __future__ import annotations

import contextlib
import itertools
import random
import struct
import time

import pytest

from tests.realtime.rawhttp import MIB, escaped, log_size, send_in_background, small_window, still_serving
from tests.realtime.test_websocket_frames import BINARY, CLOSE, PING, PONG, TEXT, Raw, encode

pytestmark = pytest.mark.live

CONNECT = b"40/tasks,{}"  # answered with the namespace's CONNECT
LIMIT = 1_000_000  # the Engine.IO maxPayload


@pytest.fixture
def raw(unpinged):
    client = Raw(unpinged.port)
    client.open()
    yield client
    client.close()
    assert not escaped(unpinged.log)


def _header(first: int, second: int, extended: bytes = b"") -> bytes:
    return bytes((first, second)) + extended + b"\0\0\0\0"  # a zero mask: the payload as it is


def _long(size: int) -> bytes:
    return struct.pack("!Q", size)


def _fragments(raw: Raw, message: bytes, *cuts: int) -> None:
    """``message`` as a text message cut into fragments at ``cuts``."""
    parts = list(itertools.pairwise([0, *cuts, len(message)]))
    for index, (start, end) in enumerate(parts):
        raw.send(TEXT if index == 0 else 0, message[start:end], fin=index == len(parts) - 1)


VIOLATIONS = {
    "binary frame inside a fragmented text": (
        lambda raw: (raw.send(TEXT, b"4", fin=False), raw.send(BINARY, b"x")),
        1002,
    ),
    "RSV2": (lambda raw: raw.send(TEXT, CONNECT, rsv=2), 1002),
    "RSV3": (lambda raw: raw.send(TEXT, CONNECT, rsv=1), 1002),
    "reserved control opcode": (lambda raw: raw.send(0xB, b""), 1002),
    "reserved data opcode": (lambda raw: raw.send(0x7, b""), 1002),
    "long close frame": (lambda raw: raw.send(CLOSE, struct.pack("!H", 1000) + b"x" * 124), 1002),
    "fragmented close": (lambda raw: raw.send(CLOSE, struct.pack("!H", 1000), fin=False), 1002),
    "16-bit length not minimal": (
        lambda raw: raw.sock.sendall(_header(0x81, 0xFE, struct.pack("!H", 5))),
        1002,
    ),
    "64-bit length not minimal": (lambda raw: raw.sock.sendall(_header(0x81, 0xFF, _long(5))), 1002),
    "64-bit length with the top bit": (
        lambda raw: raw.sock.sendall(_header(0x81, 0xFF, _long(2**63 + 5))),
        1002,
    ),
    "unmasked empty frame": (lambda raw: raw.send(TEXT, b"", masked=False), 1002),
    # Only the head of the frame over the limit: refused before its payload comes.
    "message one byte over the limit": (
        lambda raw: raw.sock.sendall(_header(0x81, 0xFF, _long(LIMIT + 1))),
        1009,
    ),
    "fragments one byte over the limit": (
        lambda raw: (raw.send(TEXT, b" " * LIMIT, fin=False), raw.sock.sendall(_header(0x80, 0x80 | 1))),
        1009,
    ),
    "invalid UTF-8 in a later fragment": (
        lambda raw: _fragments(raw, b'42/tasks,["\xed\xa0\x80"]', 11),
        1007,
    ),
    "surrogate in text": (lambda raw: raw.send(TEXT, b'42/tasks,["\xed\xa0\x80"]'), 1007),
    "overlong UTF-8 in text": (lambda raw: raw.send(TEXT, b'42/tasks,["\xc0\xaf"]'), 1007),
    "code point over U+10FFFF": (lambda raw: raw.send(TEXT, b'42/tasks,["\xf4\x90\x80\x80"]'), 1007),
    **{
        f"close code {code}": (lambda raw, code=code: raw.send(CLOSE, struct.pack("!H", code)), 1002)
        for code in (0, 1004, 1006, 1015, 1016, 2999, 5000, 65535)
    },
    **{
        f"close code {code} echoed": (lambda raw, code=code: raw.send(CLOSE, struct.pack("!H", code)), code)
        for code in (1001, 1003, 1011, 1014, 3000, 4999)
    },
}


@pytest.mark.parametrize(("attack", "code"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_each_frame_shape_closes_with_its_code(raw, attack, code):
    attack(raw)
    assert raw.closed_with() == code


ACCEPTED = {
    "control frames between fragments": lambda raw: (
        raw.send(TEXT, CONNECT[:3], fin=False),
        raw.send(PONG, b"unasked"),
        raw.send(PING, b""),
        raw.send(0, CONNECT[3:], fin=False),
        raw.send(PING, b"x" * 125),
        raw.send(0, b"", fin=True),
    ),
    "a character split across fragments": lambda raw: _fragments(
        raw, b'40/tasks,{"a":"\xe2\x82\xac"}', 16, 17
    ),
    "empty fragments": lambda raw: _fragments(raw, CONNECT, 0, 0, len(CONNECT)),
    "a message exactly at the limit": lambda raw: raw.send(TEXT, CONNECT + b" " * (LIMIT - len(CONNECT))),
    "a binary message, then text": lambda raw: (raw.send(BINARY, b"\xff" * 10), raw.text(CONNECT.decode())),
}


@pytest.mark.parametrize("send", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_each_accepted_shape_reaches_the_handler(raw, send):
    send(raw)
    while True:
        opcode, payload = raw.frame()
        if opcode == TEXT:
            break
        assert opcode == PONG
    assert payload.startswith(b'40/tasks,{"sid":')


def test_an_empty_close_is_echoed_and_what_follows_is_ignored(raw):
    raw.sock.sendall(encode(CLOSE, b"") + encode(TEXT, CONNECT) + encode(PING, b"late"))
    assert raw.frame() == (CLOSE, b"")
    with pytest.raises(ConnectionError):
        raw.frame()


class SmallWindow(Raw):
    """A websocket client whose receive buffer is small: what it does not read stays in the server."""

    def __init__(self, port: int) -> None:
        self.sock = small_window(port)
        self.data = b""


@pytest.mark.parametrize(
    "frame",
    [encode(PING, b"p" * 125), encode(TEXT, b"2" + b"p" * 120)],
    ids=["websocket pings", "Engine.IO pings"],
)
def test_pings_of_a_client_that_reads_nothing_hold_no_memory(unpinged, frame):
    count = 100_000  # about 13 MB of pongs
    client = SmallWindow(unpinged.port)
    try:
        client.open()
        client.send(TEXT, b"5")  # Engine.IO UPGRADE: the session is the websocket's
        before = unpinged.rss_kib()
        sender = send_in_background(client.sock, frame * count)
        grown = 0
        for _ in range(5):
            time.sleep(0.5)
            grown = max(grown, unpinged.rss_kib() - before)
        still_serving(unpinged.port)
        assert grown < 3 * MIB
        answers = [client.frame() for _ in range(count)]  # then every pong comes
        sender.join(30)
        assert {opcode for opcode, _ in answers} == {PONG if frame[0] & 0x0F == PING else TEXT}
    finally:
        client.close()
    assert not escaped(unpinged.log)


FUZZ_SEED, FUZZ_SECONDS = 6455, 3
FRAMES = [
    encode(TEXT, CONNECT),
    encode(TEXT, b'42/tasks,["ping"]'),
    encode(PING, b"ping"),
    encode(PONG, b""),
    encode(TEXT, b"40/ta", fin=False) + encode(0, b"sks,{}"),
    encode(BINARY, b"\x00\xff"),
    encode(TEXT, b"x" * 200),
    encode(CLOSE, struct.pack("!H", 1000) + b"bye"),
]


def _mutated_frames(rng: random.Random) -> bytes:
    out = bytearray(b"".join(rng.choice(FRAMES) for _ in range(rng.randint(1, 4))))
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out))
        if rng.random() < 0.7:
            out[at] = rng.randrange(256)  # often a header byte: opcode, flags, length, mask
        else:
            del out[at : at + rng.randint(1, 4)]
    return bytes(out)


def test_mutated_frames_close_with_a_protocol_code_and_no_error(unpinged):
    rng = random.Random(FUZZ_SEED)
    since, tried = log_size(unpinged.log), 0
    deadline = time.monotonic() + FUZZ_SECONDS
    while time.monotonic() < deadline:
        frames = _mutated_frames(rng)
        client = Raw(unpinged.port)
        try:
            client.open()
            client.sock.sendall(frames + encode(CLOSE, b""))  # ends what the mutations left in step
            client.sock.settimeout(0.15)
            # Whatever comes is well-formed frames (a handler failing would show in the log).
            with contextlib.suppress(TimeoutError, ConnectionError):
                while client.frame()[0] != CLOSE:
                    pass
        finally:
            client.close()
        tried += 1
    assert tried > 30
    assert not escaped(unpinged.log, since), "\n".join(escaped(unpinged.log, since))
