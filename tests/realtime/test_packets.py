"""Encoding and decoding of Engine.IO and Socket.IO packets."""

from __future__ import annotations

import pytest

from vantage6.socketio import packets as p


@pytest.mark.parametrize(
    "packet, text",
    [
        (p.SioPacket(p.CONNECT, "/tasks", {}), "40/tasks,{}"),
        (p.SioPacket(p.CONNECT, "/tasks", {"sid": "x"}), '40/tasks,{"sid":"x"}'),
        (p.SioPacket(p.DISCONNECT, "/tasks"), "41/tasks,"),
        (p.SioPacket(p.EVENT, "/tasks", ["sync"]), '42/tasks,["sync"]'),
        (p.SioPacket(p.EVENT, "/tasks", ["ping"], ack_id=12), '42/tasks,12["ping"]'),
        (p.SioPacket(p.ACK, "/tasks", [], ack_id=12), "43/tasks,12[]"),
        (p.SioPacket(p.EVENT, "/", ["a", {"b": "é"}]), '42["a",{"b":"é"}]'),
        (p.SioPacket(p.EVENT, "/", ["a"], ack_id=3), '423["a"]'),
    ],
)
def test_socketio_packets_round_trip(packet, text):
    assert packet.encode() == text
    assert p.decode_sio(text[1:]) == packet


def test_connect_without_payload_and_connect_error():
    assert p.decode_sio("0/tasks,") == p.SioPacket(p.CONNECT, "/tasks")
    assert p.decode_sio("0") == p.SioPacket(p.CONNECT, "/")
    error = p.SioPacket(p.CONNECT_ERROR, "/x", {"message": "Invalid namespace"})
    assert error.encode() == '44/x,{"message":"Invalid namespace"}'


@pytest.mark.parametrize(
    "text",
    ["", "x", "9", '2/tasks,{"not": "a list"}', "2/tasks,[]", "2/tasks,[1]", "2/tasks,[", '51-["a",{}]'],
)
def test_bad_or_binary_socketio_packets_are_refused(text):
    with pytest.raises(p.PacketError):
        p.decode_sio(text)


@pytest.mark.parametrize("depth", [65, 200_000])
def test_packets_nested_too_deep_are_refused(depth):
    with pytest.raises(p.PacketError):
        p.decode_sio('2/tasks,["a",' + "[" * depth + "]" * depth + "]")


def test_polling_payload_framing():
    assert p.encode_payload(["2", '42/tasks,["sync"]']) == '2\x1e42/tasks,["sync"]'
    assert p.decode_payload("3\x1e40/tasks,{}\x1ebAQID") == [(p.PONG, ""), (p.MESSAGE, "0/tasks,{}")]
    with pytest.raises(p.PacketError):
        p.decode_payload("9")


def test_event_packet():
    assert p.event_packet("/tasks", "sync") == '42/tasks,["sync"]'
    assert p.event_packet("/tasks", "new_task", {"id": 1, "parent_id": None}) == (
        '42/tasks,["new_task",{"id":1,"parent_id":null}]'
    )


@pytest.mark.parametrize(
    ("namespace", "event", "data"),
    [
        ("/", "sync", None),
        ("/tasks", "sync", None),
        ("/tasks", "algorithm_status_change", {"status": "active", "run_id": 3, "parent_id": None}),
        ("/admin", "message", 'é "quoted"\n\u2028 \U0001f600'),
        ("/tasks", "kill_containers", {"kill_list": [{"run_id": 1}], "collaboration_id": 2}),
        ("/tasks", "value", 0),
    ],
)
def test_an_event_packet_is_what_its_socketio_packet_encodes_to(namespace, event, data):
    args = [event] if data is None else [event, data]
    assert p.event_packet(namespace, event, data) == p.SioPacket(p.EVENT, namespace, args).encode()
    assert p.decode_sio(p.event_packet(namespace, event, data)[1:]).data == args
