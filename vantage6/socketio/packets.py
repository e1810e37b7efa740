"""Engine.IO v4 and Socket.IO v5 packets (text only; binary payloads are not supported)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from vantage6.nesting import found_in_strings, loads

# Engine.IO packet types.
OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = range(7)
# Socket.IO packet types.
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
_EVENT_PREFIX = f"{MESSAGE}{EVENT}"  # an Engine.IO MESSAGE carrying a Socket.IO EVENT

# Packets of one long-polling payload are separated by the ASCII record separator.
RECORD_SEPARATOR = "\x1e"
# Digits are ASCII digits (str.isdigit takes "²", which int() refuses). An acknowledgement id is at most
# what a JavaScript client counts exactly (far fewer digits than int() refuses to convert).
DIGITS = "0123456789"
MAX_ACK_ID = 2**53 - 1
# What a \u escape of JSON can put in a string that no UTF-8 text (a log line, a database column) holds.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PacketError(ValueError):
    """A packet that does not follow the protocol."""


def encode_eio(packet_type: int, data: str = "") -> str:
    return f"{packet_type}{data}"


def decode_eio(text: str) -> tuple[int, str]:
    """(type, data) of an Engine.IO text packet."""
    if not text or text[0] not in DIGITS[: NOOP + 1]:
        raise PacketError(f"bad Engine.IO packet {text[:20]!r}")
    return int(text[0]), text[1:]


def encode_payload(packets: list[str]) -> str:
    return RECORD_SEPARATOR.join(packets)


def decode_payload(body: str) -> list[tuple[int, str]]:
    """The Engine.IO packets of a long-polling request body; binary (``b…``) packets are skipped."""
    return [decode_eio(part) for part in body.split(RECORD_SEPARATOR) if part and part[0] != "b"]


# Built once: ``json.dumps`` with arguments builds an encoder on every call (a room event is encoded
# once per event, on the path of every event a node reports).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class SioPacket:
    type: int
    namespace: str = "/"
    data: object = None
    ack_id: int | None = None

    def encode(self) -> str:
        """The Engine.IO MESSAGE packet carrying this Socket.IO packet."""
        parts = [str(MESSAGE), str(self.type)]
        if self.namespace != "/":
            parts.append(self.namespace + ",")
        if self.ack_id is not None:
            parts.append(str(self.ack_id))
        if self.data is not None:
            parts.append(_dumps(self.data))
        return "".join(parts)


def decode_sio(text: str) -> SioPacket:
    """A Socket.IO packet from the data of an Engine.IO MESSAGE packet."""
    if not text or text[0] not in DIGITS:
        raise PacketError(f"bad Socket.IO packet {text[:20]!r}")
    packet_type = int(text[0])
    if packet_type in (BINARY_EVENT, BINARY_ACK):
        raise PacketError("binary Socket.IO packets are not supported")
    if packet_type > CONNECT_ERROR:
        raise PacketError(f"unknown Socket.IO packet type {packet_type}")
    rest = text[1:]
    namespace = "/"
    if rest.startswith("/"):
        end = rest.find(",")
        namespace, rest = (rest, "") if end < 0 else (rest[:end], rest[end + 1 :])
    digits = len(rest) - len(rest.lstrip(DIGITS))
    if digits > len(str(MAX_ACK_ID)) or (digits and int(rest[:digits]) > MAX_ACK_ID):
        raise PacketError("Socket.IO ack id out of range")
    ack_id = int(rest[:digits]) if digits else None
    rest = rest[digits:]
    try:
        data = loads(rest) if rest else None
    except ValueError as exc:  # TooDeep included
        raise PacketError(f"bad JSON in Socket.IO packet: {exc}") from None
    if "\\u" in rest and found_in_strings(data, UNSTORABLE) is not None:
        raise PacketError("a NUL or a lone surrogate in a Socket.IO packet")
    if packet_type == EVENT and (not isinstance(data, list) or not data or not isinstance(data[0], str)):
        raise PacketError("an event needs a name")
    return SioPacket(packet_type, namespace, data, ack_id)


def event_packet(namespace: str, event: str, data: object = None) -> str:
    """The encoded EVENT packet of ``event`` (no argument when ``data`` is None): what
    ``SioPacket(EVENT, namespace, [event, data]).encode()`` gives, without building the packet."""
    prefix = _EVENT_PREFIX if namespace == "/" else f"{_EVENT_PREFIX}{namespace},"
    return prefix + _dumps([event] if data is None else [event, data])
