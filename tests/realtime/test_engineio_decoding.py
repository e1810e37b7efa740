"""Hostile Engine.IO / Socket.IO packets: the decoders refuse them with PacketError alone, and a real
server answers them (polling) or ignores them (websocket) without an exception in its log."""

from __future__ import annotations

import contextlib
import json
import random
import time

import pytest
import requests

from tests.realtime.helpers import token
from tests.realtime.rawhttp import escaped, log_size
from tests.realtime.test_websocket_frames import TEXT, Raw
from vantage6.socketio import packets as p

pytestmark = pytest.mark.live

CONNECT = "40/tasks,{}"
HUGE = "9" * 5000  # more digits than Python converts to an int
# Characters that digit checks, separators and the JSON decoder treat specially.
ALPHABET = "0123456789²٣\U0001d7d9⁴/,;[]{}\"':-_.\\ \x1e\x00\x7fbtrueflsn\u2028\ufeff\U0001f600é"


def _random_packet(rng: random.Random) -> str:
    parts = [
        rng.choice(["", "4", "42", "40", "43", "41", "44", "45", "4²", "4٣", "b", "6", "2", "3"]),
        rng.choice(["", "/tasks,", "/tasks", "/", "/\x00,", "/tasks/../x,", "/" + "a" * 300 + ","]),
        rng.choice(["", "1", "0", "-1", "٣", "1²", "9" * 17, HUGE[:20]]),
        rng.choice(["", "[]", "{}", '["ping"]', '["x",1]', "[1]", '"x"', "null", "[[[[", "1e999", "[NaN]"]),
    ]
    mutated = list("".join(parts))
    for _ in range(rng.randrange(3)):
        mutated.insert(rng.randrange(len(mutated) + 1), rng.choice(ALPHABET))
    return "".join(mutated)


def test_the_decoders_refuse_what_they_cannot_read_with_packet_errors_only():
    rng = random.Random(6455)
    deadline = time.monotonic() + 1.5
    tried = 0
    while time.monotonic() < deadline:
        packet = _random_packet(rng)
        for decode in (p.decode_payload, p.decode_eio, p.decode_sio):
            with contextlib.suppress(p.PacketError):
                decode(packet)
        tried += 1
    assert tried > 1000


@pytest.mark.parametrize(
    ("decode", "text"),
    [
        (p.decode_payload, "²"),
        (p.decode_payload, "٣"),
        (p.decode_sio, "²"),
        (p.decode_sio, "٣"),
        (p.decode_sio, '2/tasks,1²["ping"]'),
        (p.decode_sio, '2/tasks,٣["ping"]'),
        (p.decode_sio, f'2/tasks,{HUGE}["ping"]'),
    ],
    ids=[
        "superscript type",
        "arabic type",
        "superscript sio type",
        "arabic sio type",
        "superscript ack",
        "arabic ack",
        "huge ack",
    ],
)
def test_digits_other_than_ascii_and_huge_ack_ids_are_packet_errors(decode, text):
    with pytest.raises(p.PacketError):
        decode(text)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ('2/tasks,["x","\\u0000"]', True),
        ('2/tasks,["x",{"\\ud800":1}]', True),
        ('2/tasks,["x",["\\udfff"]]', True),
        ('2/tasks,["x","\\ud83d\\ude00 \\u00e9"]', False),  # a surrogate pair: one character
    ],
    ids=["NUL", "lone high surrogate in a key", "lone low surrogate", "surrogate pair"],
)
def test_strings_no_utf_8_text_can_hold_are_packet_errors(text, refused):
    if refused:
        with pytest.raises(p.PacketError):
            p.decode_sio(text)
    else:
        assert p.decode_sio(text).data == ["x", "\U0001f600 é"]


def test_an_ack_id_is_kept_within_what_a_javascript_client_can_count():
    assert p.decode_sio('2/tasks,9007199254740991["ping"]').ack_id == 2**53 - 1
    with pytest.raises(p.PacketError):
        p.decode_sio('2/tasks,9007199254740992["ping"]')


# Polling POST bodies; each is sent by a session of its own.
PAYLOADS = {
    "empty": "",
    "only separators": "\x1e\x1e\x1e",
    "empty message": "4",
    "unknown Engine.IO type": "9",
    "superscript Engine.IO type": "²",
    "arabic Engine.IO type": "٣",
    "superscript Socket.IO type": "4²",
    "many tiny packets": "\x1e".join(["4"] * 50_000),
    "many connects": "\x1e".join([CONNECT] * 2_000),
    "binary packet": "bBAUG",
    "binary event with lying attachment count": '451-/tasks,["x",{"_placeholder":true,"num":7}]',
    "binary ack": "461-/tasks,0[]",
    "ack id overflowing 64 bits": f'40/tasks,{{}}\x1e42/tasks,{"9" * 25}["ping"]',
    "ack id with too many digits": f'40/tasks,{{}}\x1e42/tasks,{HUGE}["ping"]',
    "ack id with other digits": '40/tasks,{}\x1e42/tasks,1²["ping"]',
    "NUL in a namespace": "40/ta\x00sks,{}",
    "long namespace": "40/" + "n" * 100_000 + ",{}",
    "namespace without comma": "40/tasks",
    "event not a list": '40/tasks,{}\x1e42/tasks,{"a":1}',
    "event name not a string": "40/tasks,{}\x1e42/tasks,[1]",
    "event without name": "40/tasks,{}\x1e42/tasks,[]",
    "JSON that is not": '40/tasks,{}\x1e42/tasks,["ping"',
    "JSON NaN": '40/tasks,{}\x1e42/tasks,["ping",NaN]',
    "JSON huge number": '40/tasks,{}\x1e42/tasks,["ping",1e999999]',
    "JSON deep": "40/tasks,{}\x1e42/tasks," + "[" * 100_000,
    "connect auth a list": "40/tasks,[]",
    "connect auth a string": '40/tasks,"token"',
    "connect auth token a number": '40/tasks,{"token":5}',
    "connect auth token a list": '40/tasks,{"token":[]}',
    "ack from the client": "40/tasks,{}\x1e43/tasks,5[]",
    "disconnect of a foreign namespace": "41/other,",
    "close": "1",
}


def _open(url: str, **params: str) -> tuple[requests.Session, str]:
    http = requests.Session()
    opened = http.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling", **params}, timeout=10)
    return http, json.loads(opened.text[1:])["sid"]


def test_a_request_for_base64_payloads_gets_the_text_protocol(unpinged):
    """``b64=1`` (Engine.IO 3's binary-less clients) changes nothing: packets are text."""
    http, sid = _open(unpinged.url, b64="1")
    params = {"EIO": "4", "transport": "polling", "sid": sid, "b64": "1"}
    assert http.post(f"{unpinged.url}/socket.io/", params=params, data=CONNECT, timeout=10).text == "ok"
    answer = http.get(f"{unpinged.url}/socket.io/", params=params, timeout=10)
    assert answer.text.startswith('40/tasks,{"sid":')


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_hostile_polling_payload_is_answered_without_an_error(unpinged, payload):
    since = log_size(unpinged.log)
    http, sid = _open(unpinged.url)
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    posted = http.post(f"{unpinged.url}/socket.io/", params=params, data=payload.encode(), timeout=30)
    assert posted.status_code in (200, 400), posted.text
    assert not escaped(unpinged.log, since), "\n".join(escaped(unpinged.log, since))
    # The server goes on with its other clients.
    other, other_sid = _open(unpinged.url)
    connected = other.post(f"{unpinged.url}/socket.io/", params={**params, "sid": other_sid}, data=CONNECT)
    assert connected.text == "ok"


# One packet per websocket message (no record separator); all but CLOSE.
MESSAGES = {name: text for name, text in PAYLOADS.items() if "\x1e" not in text and text != "1"}


@pytest.mark.parametrize("payload", MESSAGES.values(), ids=MESSAGES.keys())
def test_a_hostile_websocket_message_is_ignored(unpinged, payload):
    since = log_size(unpinged.log)
    raw = Raw(unpinged.port)
    try:
        raw.open()
        raw.text("40/tasks,{}")
        assert raw.frame()[1].startswith(b'40/tasks,{"sid":')
        raw.send(TEXT, payload.encode())
        raw.text("2probe")  # a ping the server answers: it went on reading
        while True:
            opcode, answer = raw.frame()
            assert opcode == TEXT, answer
            if answer == b"3probe":
                break
    finally:
        raw.close()
    assert not escaped(unpinged.log, since), "\n".join(escaped(unpinged.log, since))


WRONG_SHAPES = [
    None,
    1,
    -1,
    2**70,
    1.5,
    "x",
    [],
    [1],
    {},
    {"run_id": "x"},
    {"run_id": 2**70},
    {"id": None},
    {"run_id": [1]},
    {"status": {}},
    [[[[[]]]]],
    "\x00",
    {"a": "\x00"},
    {"\x00": 1},
    {"a": "\ud800"},
]
NODE_EVENTS = [
    "algorithm_status_change",
    "algorithm_log",
    "node_info_update",
    "node_metrics_update",
    "ping",
    "message",
    "error",
    "join_room",
    "unknown",
]


def test_node_events_of_every_wrong_shape_are_ignored(unpinged, live_world):
    since = log_size(unpinged.log)
    raw = Raw(unpinged.port)
    try:
        raw.open(Authorization=f"Bearer {token(live_world.node_a)}")
        raw.text("40/tasks,{}")
        assert raw.frame()[1].startswith(b'40/tasks,{"sid":')
        for event in NODE_EVENTS:
            for data in WRONG_SHAPES:
                raw.text("42/tasks," + json.dumps([event, data]))  # within the packet burst
        raw.text("2probe")
        while raw.frame() != (TEXT, b"3probe"):
            pass
    finally:
        raw.close()
    assert not escaped(unpinged.log, since), "\n".join(escaped(unpinged.log, since))
