"""The server's routes plus a streamed download, to test the ASGI handler's streaming on its own."""

from django.http import StreamingHttpResponse
from django.urls import path

from vantage6.urls import handler404, handler500
from vantage6.urls import urlpatterns as server_urlpatterns

CHUNKS = [b"a" * 70_000, b"", b"b" * 10]
closed: list[bool] = []


def stream(_request):
    def chunks():
        try:
            yield from CHUNKS
        finally:
            closed.append(True)

    return StreamingHttpResponse(chunks(), content_type="application/octet-stream")


def broken(_request):
    raise RuntimeError("a bug")


urlpatterns = [path("api/test-stream", stream), path("api/test-broken", broken), *server_urlpatterns]
__all__ = ["handler404", "handler500", "urlpatterns"]
