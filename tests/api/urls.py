"""The server's routes plus one endpoint that reads a JSON body, to test body parsing on its own."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from vantage6.urls import handler404, handler500
from vantage6.urls import urlpatterns as server_urlpatterns


class EchoView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request: Request) -> Response:
        return Response({"received": request.data})


urlpatterns = [path("api/test-echo", EchoView.as_view()), *server_urlpatterns]
__all__ = ["handler404", "handler500", "urlpatterns"]
