"""The API's errors, and the one place that turns them into HTTP responses.

Each error class carries its status on the class (``STATUS_CODE``), Chalice-style,
and the body has Chalice's error shape (``{"Code": ..., "Message": ...}``) so an
error raised here looks like one Chalice raises itself (its 415 for a content type
a route does not accept). ``details`` adds a list of machine-readable problems,
e.g. one per rejected event.
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.http import HttpResponse

__all__ = [
    "ApiError",
    "BadRequestError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServiceUnavailableError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "error_response",
]


class ApiError(Exception):
    """Root of the API's errors: ``STATUS_CODE`` and ``CODE`` on each class."""

    STATUS_CODE = 500
    CODE = "InternalServerError"
    MESSAGE_IS_LOGGABLE = True
    """False where the message may quote the request (and so personal data)."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequestError(ApiError):
    """The request can never succeed as sent (malformed JSON, no valid event)."""

    STATUS_CODE = 400
    CODE = "BadRequestError"
    MESSAGE_IS_LOGGABLE = False


class NotFoundError(ApiError):
    """Nothing here for this request (an invalid or expired link)."""

    STATUS_CODE = 404
    CODE = "NotFoundError"


class UnauthorizedError(ApiError):
    """Missing, malformed, wrong or stale request signature."""

    STATUS_CODE = 401
    CODE = "UnauthorizedError"


class ForbiddenError(ApiError):
    """A provider webhook whose signature does not match."""

    STATUS_CODE = 403
    CODE = "ForbiddenError"


class PayloadTooLargeError(ApiError):
    STATUS_CODE = 413
    CODE = "PayloadTooLargeError"


class UnsupportedMediaTypeError(ApiError):
    STATUS_CODE = 415
    CODE = "UnsupportedMediaType"


class ServiceUnavailableError(ApiError):
    """Not configured yet, or a dependency failed; the caller may retry."""

    STATUS_CODE = 503
    CODE = "ServiceUnavailableError"


def error_response(exc: ApiError) -> HttpResponse:
    """The HTTP response for ``exc``: the only mapping from errors to status codes."""
    body: dict[str, Any] = {"Code": exc.CODE, "Message": exc.message}
    if exc.details:
        body["errors"] = exc.details
    return HttpResponse(exc.STATUS_CODE, body)
