"""One error hierarchy and one body shape: ``{"error": "IncidentNotFound", "detail": "..."}``."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    headers: dict[str, str] | None = None
    #: More fields of the body, beside ``error`` and ``detail`` (e.g. the next free slot).
    extra: dict[str, Any] | None = None

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code

    @property
    def error(self) -> str:
        return type(self).__name__


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class PayloadTooLarge(AppError):
    status_code = 413


class TooManyRequests(AppError):
    status_code = 429


class ServiceUnavailable(AppError):
    status_code = 503
    headers = {"Retry-After": "2"}


def error_response(
    status_code: int,
    error: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {"error": error, "detail": detail, **extra}
    return Response(
        orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers
    )


_HTTP_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationError",
    429: "TooManyRequests",
}

#: A database or Redis that is down, restarting or out of connections: worth a retry (the
#: dispatcher keeps the entry, a console stays open) or a 503, never the fault of the request or
#: the entry. The one list for the API, the consoles and the dispatchers; ``transient`` says
#: whether an exception caught by it really is one.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.TooManyConnectionsError,
    # A closed connection is a plain asyncpg InterfaceError ("connection is closed").
    asyncpg.InterfaceError,
    # A connection the server dropped mid-statement (e.g. PostgreSQL restarting) can surface as
    # asyncpg's protocol-state error rather than as a connection error.
    asyncpg.InternalClientError,
    RedisConnectionError,
    RedisTimeoutError,
)
# SQLAlchemy's wrappers of the same, for the session-based endpoints.
_UNAVAILABLE = (*TRANSIENT, InterfaceError, OperationalError)


def transient(exc: BaseException) -> bool:
    """An outage, not a bug: asyncpg's DataError (a value we sent wrong) is an InterfaceError
    too, and retrying it would never succeed."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, asyncpg.DataError)


def _clean_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> Response:
        return error_response(
            exc.status_code, exc.error, exc.detail, headers=exc.headers, **(exc.extra or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        fields = _clean_validation_errors(exc)
        summary = "; ".join(f"{'.'.join(str(p) for p in f['loc'])}: {f['msg']}" for f in fields[:5])
        return error_response(422, "ValidationError", summary or "invalid request", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        name = _HTTP_NAMES.get(exc.status_code, "HTTPError")
        return error_response(
            exc.status_code, name, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> Response:
        if exc.connection_invalidated or (exc.orig is not None and transient(exc.orig)):
            return _unavailable(exc)
        raise exc

    for exc_type in _UNAVAILABLE:

        @app.exception_handler(exc_type)
        async def _down(_: Request, exc: Exception) -> Response:
            if isinstance(exc, asyncpg.DataError):
                raise exc  # our bug: a 500, logged with its traceback
            return _unavailable(exc)


def _unavailable(exc: BaseException) -> Response:
    log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(
        503,
        "ServiceUnavailable",
        "a backing service is unavailable; retry shortly",
        headers={"Retry-After": "2"},
    )
