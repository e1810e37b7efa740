"""Content negotiation: the API answers JSON whatever the request's ``Accept`` says, as vantage6 does."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class JsonApiNegotiation(DefaultContentNegotiation):
    """A view with one renderer (every API view: JSON) uses it without parsing ``Accept`` or ``?format``
    on each request; views with several (the API docs and schema) negotiate as DRF does."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        if len(renderers) == 1:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
