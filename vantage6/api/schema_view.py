"""``/api/schema``: the OpenAPI document, generated once per process and rendered once per format.

drf-spectacular's view generates the whole document on every request (tens to hundreds of ms of CPU),
which anyone may ask for: a few anonymous clients could keep every server process busy. Here the
document is generated on first use and each of its renderings kept, keyed on what they depend on:

- the URL patterns (``ROOT_URLCONF``; the API path is fixed at start-up);
- the renderer (YAML or JSON, by ``Accept`` or ``?format``) and, for JSON, the indent the media type
  may ask for (DRF bounds it to 0-8).

It depends on nothing else of the request: the document is public (no operation left out for the
caller), no operation's schema reads the request it is generated with, the API has no versions (a
``?version=`` is not read: it would only rename the document, and each value would generate it anew)
and no translations (``USE_I18N`` is off, so ``?lang=`` is not read either).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request


class Document:
    """The document and its renderings, made once each (one generation at a time: a burst of first
    requests waits for the one generation)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.documents: dict[Any, dict] = {}
        self.renderings: dict[tuple, str | bytes] = {}

    def rendered(self, view: SchemaView, renderer: BaseRenderer, media_type: str) -> str | bytes:
        urlconf = settings.ROOT_URLCONF
        indent = renderer.get_indent(media_type, {}) if isinstance(renderer, JSONRenderer) else None
        key = (urlconf, type(renderer), indent)
        rendering = self.renderings.get(key)
        if rendering is not None:
            return rendering
        with self.lock:
            if key not in self.renderings:
                if urlconf not in self.documents:
                    self.documents[urlconf] = view.generate()
                self.renderings[key] = renderer.render(self.documents[urlconf], media_type, {})
            return self.renderings[key]


document = Document()


class SchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, answering from ``document``: the same bytes and headers."""

    def generate(self) -> dict:
        generator = self.generator_class(urlconf=self.urlconf, api_version=None, patterns=self.patterns)
        return generator.get_schema(request=None, public=self.serve_public)

    def _get_schema_response(self, request: Request) -> HttpResponse:
        renderer, media_type = request.accepted_renderer, request.accepted_media_type
        content_type = renderer.media_type
        if renderer.charset:
            content_type += f"; charset={renderer.charset}"  # as DRF's Response says it
        response = HttpResponse(document.rendered(self, renderer, media_type), content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="{self._get_filename(request, None)}"'
        return response
