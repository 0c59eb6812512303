"""Framework-free HTTP request and response, and the dispatcher that maps errors.

The routes in ``app.py`` convert Chalice's request into :class:`HttpRequest` and
:class:`HttpResponse` back, so the API logic could move to another framework (e.g.
Powertools' event handler) unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request: ``headers`` with lower-case names, ``body`` as received, ``query``
    with every value of each query-string parameter."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, method: str, path: str, headers: Mapping[str, str],
              body: bytes | str | None, params: Mapping[str, str] | None = None,
              query: Mapping[str, list[str]] | None = None) -> HttpRequest:
        """Normalize header names to lower case and the body to bytes; ``params`` are
        the route's path parameters, ``query`` the query string's."""
        raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        return cls(method.upper(), path, {k.lower(): v for k, v in headers.items()}, raw,
                   dict(params or {}), {k: list(v) for k, v in (query or {}).items()})

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        """The content type without parameters, lower case ('' if absent)."""
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[HttpRequest], HttpResponse]


def dispatch(handler: Handler, request: HttpRequest) -> HttpResponse:
    """Run ``handler``; an :class:`~chalicelib.api.errors.ApiError` becomes its response.

    Anything else propagates: Chalice answers 500 and Lambda records the error.
    """
    from chalicelib.api.errors import ApiError, error_response

    try:
        return handler(request)
    except ApiError as exc:
        reason = exc.message if exc.MESSAGE_IS_LOGGABLE else "(not logged: may quote the body)"
        log.info("request refused", extra={"path": request.path, "status": exc.STATUS_CODE,
                                           "code": exc.CODE, "reason": reason})
        return error_response(exc)
