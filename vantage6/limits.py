"""Request body limits, enforced by the HTTP server before a body reaches the application.

daphne (through twisted) receives a whole request body into a temporary file before the application
sees any of it, and then queues all of it in memory at once; a limit checked by Django would come
too late. So daphne's request class is replaced by one that compares ``Content-Length`` with the
limit as soon as the headers are in, and counts the bytes of a body without one (chunked) as they
arrive. A body over the limit is answered 413 at once and the rest of it is read and thrown away,
never stored. A large body within its limit (a blob upload) is handed to the application from the
temporary file a chunk at a time, as the application reads it. That is for plain daphne;
``python -m vantage6.serve`` serves HTTP with ``vantage6.http``, which applies ``body_limit`` itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable
from typing import BinaryIO
from urllib.parse import unquote

from daphne import http_protocol
from django.conf import settings

from vantage6.logging import PATH_TEXT_LIMIT, client_text

logger = logging.getLogger("vantage6.limits")

BLOB_UPLOAD_PATH = f"{settings.API_PATH}/blobstream"
# Bodies larger than this go to the application in chunks of this size, one after the other.
FEED_CHUNK = 256 * 1024
FEED_POLL_SECONDS = 0.001


def too_large_message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit // 2**20} MiB"


def _no_token_is_valid(_token: str) -> bool:
    return False


# Whether a bearer token is a valid access token of the API (signature, expiry; the view checks the
# rest): the token format is the accounts app's, so install() is given the check.
_is_access_token: Callable[[str], bool] = _no_token_is_valid


def _has_access_token(authorization: list[bytes] | None) -> bool:
    parts = authorization[0].split() if authorization else []
    return len(parts) == 2 and parts[0] == b"Bearer" and _is_access_token(parts[1].decode("ascii", "replace"))


def body_limit(method: bytes, target: bytes, authorization: list[bytes] | None) -> int:
    """The largest body accepted for a request: the blob store limit for an upload with an access
    token, the general limit otherwise."""
    # The path as the application routes it (urlsplit would refuse some targets: "//[").
    path = unquote(target.partition(b"?")[0].decode("latin-1"))
    if method == b"POST" and path == BLOB_UPLOAD_PATH and _has_access_token(authorization):
        return settings.MAX_BLOB_UPLOAD_BYTES
    return settings.MAX_BODY_BYTES


class LimitedWebRequest(http_protocol.WebRequest):
    """daphne's request: refuses a body over its limit before storing it, and hands a large one to the
    application in chunks."""

    refused = False
    feeder: asyncio.Future | None = None

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
        if self.received <= FEED_CHUNK:
            super().process()
            return
        stored, self.content = self.content, io.BytesIO()  # type: ignore[has-type]  # twisted's request
        # daphne queues the empty body in its place, which is taken back for the stored one.
        super().process().addCallback(lambda _: self._feed(stored))

    def _feed(self, stored: BinaryIO) -> None:
        queue = self.application_queue
        if queue is None or queue.empty():  # answered without the application (a bad request)
            stored.close()
            return
        queue.get_nowait()
        stored.seek(0)
        self.feeder = asyncio.ensure_future(_feed(queue, stored))

    def _stop_feeding(self) -> None:
        """The answer is out or the client gone: the rest of the body is of no use."""
        if self.feeder is not None:
            self.feeder.cancel()

    def connectionLost(self, reason: object) -> None:
        self._stop_feeding()
        super().connectionLost(reason)

    def finish(self) -> None:
        self._stop_feeding()
        super().finish()

    def _refuse(self) -> None:
        self.refused = True
        self.content.close()
        self.content = io.BytesIO()
        body = json.dumps({"msg": too_large_message(self.limit)}).encode()
        self.channel.transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        logger.info(
            "%s %s 413 body over %d bytes from %s",
            client_text(self.channel._command.decode("latin-1")),
            client_text(self.channel._path.partition(b"?")[0].decode("latin-1"), PATH_TEXT_LIMIT),
            self.limit,
            getattr(self.channel.transport.getPeer(), "host", "?"),
        )


async def _feed(queue: asyncio.Queue, body: BinaryIO) -> None:
    """``body`` into the application's queue a chunk at a time, each once the last one was taken."""
    try:
        while True:
            chunk = body.read(FEED_CHUNK)
            more = len(chunk) == FEED_CHUNK
            queue.put_nowait({"type": "http.request", "body": chunk, "more_body": more})
            if not more:
                return
            while not queue.empty():
                await asyncio.sleep(FEED_POLL_SECONDS)
    finally:
        body.close()


def install(*, is_access_token: Callable[[str], bool]) -> None:
    """Make daphne's HTTP factory build limited requests (it has no setting for this); an upload with a
    token that ``is_access_token`` accepts has the blob limit."""
    global _is_access_token
    _is_access_token = is_access_token
    http_protocol.WebRequest = LimitedWebRequest
