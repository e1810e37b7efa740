"""The server's TCP connections write without Nagle's delay: a socket's events follow each other at once
(with it, a second small write waited for the client's delayed acknowledgement, up to 40 ms)."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, UNIXAddress

from vantage6 import http


class Transport:
    def __init__(self, address: object) -> None:
        self.address = address
        self.no_delay: bool | None = None

    def getPeer(self) -> object:
        return self.address

    def getHost(self) -> object:
        return self.address

    def registerProducer(self, _producer: object, _streaming: bool) -> None:
        pass

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def _connect(address: object) -> Transport:
    transport = Transport(address)
    http.Connection(http.Factory(application=None, ws_factory=None, max_connections=1)).makeConnection(
        transport
    )
    return transport


def test_a_tcp_connection_is_written_without_delay():
    assert _connect(IPv4Address("TCP", "127.0.0.1", 7601)).no_delay is True


def test_a_unix_socket_connection_has_no_tcp_option_to_set():
    assert _connect(UNIXAddress("/tmp/v6.sock")).no_delay is None
