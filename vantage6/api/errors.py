"""The vantage6 error bodies: ``{"msg": ...}`` everywhere, validation errors with ``errors``."""

from __future__ import annotations

import logging
import sys
import traceback

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError, IntegrityError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from vantage6 import database_outage as outage
from vantage6.logging import database_error_text

logger = logging.getLogger("vantage6.api")

BODY_INCORRECT = "Request body is incorrect"
NO_PERMISSION = "You lack the permission to do that!"
UNEXPECTED = "An unexpected error occurred on the server!"
DATABASE_UNAVAILABLE = "The database is unavailable at the moment; try again later."
ASK_FOR_LESS = "Ask for less: filter the list, or sort it by fewer columns."
# Seconds a client is asked to wait before it tries a request the database could not serve again.
DATABASE_RETRY_AFTER = 1


class ApiError(exceptions.APIException):
    """An error answered as ``{"msg": msg}`` with the given status (and optional extra keys)."""

    headers: dict[str, str] = {}  # replaced per error, never changed in place

    def __init__(self, status: int, msg: object, **extra: object) -> None:
        self.status_code = status
        self.msg = msg
        self.extra = extra
        super().__init__(detail=str(msg))


def bad_request(msg: object, **extra: object) -> ApiError:
    return ApiError(400, msg, **extra)


def unauthorized(msg: str = NO_PERMISSION) -> ApiError:
    return ApiError(401, msg)


def not_found(msg: str) -> ApiError:
    return ApiError(404, msg)


def too_many_requests(msg: str, retry_after: int) -> ApiError:
    error = ApiError(429, msg)
    error.headers = {"Retry-After": str(retry_after)}
    return error


def validation_error(errors: dict) -> ApiError:
    return ApiError(400, BODY_INCORRECT, errors=errors)


def flatten(detail: object) -> object:
    """DRF's ErrorDetail tree as plain lists and dicts of strings (a list's errors by item index)."""
    if isinstance(detail, dict):
        return {str(key): flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [flatten(item) for item in detail]
    return str(detail)


def _answering_database_unavailable(exc: BaseException, where: str) -> None:
    """A request is answered 503 for ``exc``: the outage is noted, so that its end is noticed
    (``database_outage``), and logged."""
    outage.failed(exc)
    logger.error("Database unavailable, %s answered 503: %s", where, database_error_text(exc))


_RETRY = {"Retry-After": str(DATABASE_RETRY_AFTER)}


def _statement_timed_out(exc: BaseException, where: str) -> dict | None:
    """The body of the 503 of a request whose statement ran past ``STATEMENT_TIMEOUT_SECONDS`` (its
    transaction rolled back), logged; None for any other error. Retrying the same request soon is no
    use: no ``Retry-After``."""
    if not outage.statement_canceled(exc):
        return None
    logger.warning("Statement canceled, %s answered 503: %s", where, database_error_text(exc))
    return {"msg": f"{outage.canceled_text()} {ASK_FOR_LESS}"}


def exception_handler(exc: Exception, context: dict) -> Response:
    if (canceled := _statement_timed_out(exc, context["request"].path)) is not None:
        return Response(canceled, status=503)
    if outage.unavailable(exc):
        _answering_database_unavailable(exc, context["request"].path)
        return Response({"msg": DATABASE_UNAVAILABLE}, status=503, headers=_RETRY)
    if isinstance(exc, ApiError):
        return Response({"msg": exc.msg, **exc.extra}, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
        if not isinstance(errors, dict):
            errors = {"_schema": errors if isinstance(errors, list) else [errors]}
        return Response({"msg": BODY_INCORRECT, "errors": errors}, status=400)
    if isinstance(exc, exceptions.ParseError):
        return Response({"msg": BODY_INCORRECT, "errors": {"_schema": [str(exc.detail)]}}, status=400)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response({"msg": str(exc.detail)}, status=415)
    if isinstance(exc, exceptions.NotAuthenticated):
        return Response({"msg": "Missing Authorization Header"}, status=401)
    if isinstance(exc, (exceptions.PermissionDenied, DjangoPermissionDenied)):
        return Response({"msg": NO_PERMISSION}, status=401)
    if isinstance(exc, (exceptions.NotFound, Http404)):
        return Response({"msg": str(exc) or "Not found"}, status=404)
    if isinstance(exc, exceptions.APIException):
        return Response({"msg": flatten(exc.detail)}, status=exc.status_code)
    if isinstance(exc, SuspiciousOperation):
        # What Django refuses as it reads the request for the view: more query or form fields than
        # DATA_UPLOAD_MAX_NUMBER_FIELDS, say. Django answers these 400 outside DRF's views too.
        return Response({"msg": str(exc)}, status=400)
    view = context.get("view").__class__.__name__
    if isinstance(exc, IntegrityError):
        # Two requests raced past the same uniqueness check; the loser gets what a later one would.
        logger.warning("Conflict in %s answered 400: %s", view, database_error_text(exc))
        return Response(
            {"msg": "The request conflicts with existing data (a name or link already exists)."}, status=400
        )
    if isinstance(exc, DatabaseError):
        # The traceback without the database's message (see database_error_text).
        where = "".join(traceback.format_tb(exc.__traceback__))
        logger.error("Unhandled %s in %s\n%s", database_error_text(exc), view, where.rstrip())
    else:
        logger.exception("Unhandled error in %s", view, exc_info=exc)
    return Response({"msg": UNEXPECTED}, status=500)


def json_400(request: HttpRequest, exception: Exception | str | None = None) -> JsonResponse:  # noqa: ARG001 - Django's handler signature
    """A request Django refuses before any view (a malformed Host header, too many fields)."""
    return JsonResponse({"msg": str(exception or "") or "Bad request"}, status=400)


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:  # noqa: ARG001 - Django's handler signature
    return JsonResponse({"msg": "The requested URL was not found on the server."}, status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    # Django calls this while handling the exception, so it is still at hand.
    exc = sys.exc_info()[1]
    if exc is not None and (canceled := _statement_timed_out(exc, request.path)) is not None:
        return JsonResponse(canceled, status=503)
    if exc is not None and outage.unavailable(exc):
        _answering_database_unavailable(exc, request.path)
        return JsonResponse({"msg": DATABASE_UNAVAILABLE}, status=503, headers=_RETRY)
    return JsonResponse({"msg": UNEXPECTED}, status=500)
