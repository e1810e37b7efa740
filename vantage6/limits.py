"""Request body limits, enforced by the HTTP server before a body reaches the application.

daphne (through twisted) receives a whole request body before the application sees any of it, and
then queues all of it in memory at once; a limit checked by Django would come too late. So daphne's
request class is replaced by one that compares ``Content-Length`` with the limit as soon as the
headers are in, and counts the bytes of a body without one (chunked) as they arrive. A body over the
limit is answered 413 at once and the rest of it is read and thrown away, never stored.
"""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import unquote, urlsplit

from daphne import http_protocol
from django.conf import settings

from accounts.tokens import TokenError, decode

logger = logging.getLogger("vantage6.limits")

BLOB_UPLOAD_PATH = f"{settings.API_PATH}/blobstream"


def _msg(limit: int) -> str:
    return f"The request body is larger than the limit of {limit // 2**20} MiB"


def _has_access_token(authorization: list[bytes] | None) -> bool:
    """A valid access token of this server (signature, expiry); the view checks the rest."""
    parts = authorization[0].split() if authorization else []
    if len(parts) != 2 or parts[0] != b"Bearer":
        return False
    try:
        return decode(parts[1].decode("ascii", "replace")).get("type") == "access"
    except TokenError:
        return False


def body_limit(method: bytes, target: bytes, authorization: list[bytes] | None) -> int:
    """The largest body accepted for a request: the blob store limit for an upload with an access
    token, the general limit otherwise."""
    path = unquote(urlsplit(target.decode("latin-1")).path)
    if method == b"POST" and path == BLOB_UPLOAD_PATH and _has_access_token(authorization):
        return settings.MAX_BLOB_UPLOAD_BYTES
    return settings.MAX_BODY_BYTES


class LimitedWebRequest(http_protocol.WebRequest):
    """daphne's request, refusing a body over its limit before storing it."""

    refused = False

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        self.limit = body_limit(
            channel._command, channel._path, self.requestHeaders.getRawHeaders(b"authorization")
        )
        self.received = 0
        super().gotLength(length)
        if length is not None and length > self.limit:
            self._refuse()
            if self.requestHeaders.hasHeader(b"expect"):
                # The client waits for "100 Continue" before it sends the body: none will come.
                self.requestHeaders.removeHeader(b"expect")
                self.channel.loseConnection()

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        if self.received > self.limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if self.refused:
            # The refused body has been read to its end: the answer is out, the connection ends.
            self.channel.loseConnection()
            return
        super().process()

    def _refuse(self) -> None:
        self.refused = True
        self.content.close()
        self.content = io.BytesIO()
        body = json.dumps({"msg": _msg(self.limit)}).encode()
        self.channel.transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        logger.info(
            "%s %s 413 body over %d bytes from %s",
            self.channel._command.decode("latin-1"),
            urlsplit(self.channel._path.decode("latin-1")).path,
            self.limit,
            getattr(self.channel.transport.getPeer(), "host", "?"),
        )


def install() -> None:
    """Make daphne's HTTP factory build limited requests (it has no setting for this)."""
    http_protocol.WebRequest = LimitedWebRequest
