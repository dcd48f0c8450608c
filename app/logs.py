"""Logs: one JSON object a line with ``ANSIM_LOG_FORMAT=json``, and the request id.

Every HTTP request gets a request id: the caller's ``X-Request-ID`` when it is sane (1-64 of
``A-Z a-z 0-9 . _ : -``), else a new one; it goes back in the response's ``X-Request-ID`` and
is on every log line written while the request runs. An SOS carries it further: in its outbox
row's payload (so in the incidents stream, even when the relay republishes it), on the
dispatcher's line when it routes the incident, and in the console message (``request_id``);
so do a button's and a home sensor's signals (app/devices/, app/homes/).
docs/operations.md "Logs" shows how to follow one.

No log line of ours carries a position, a phone number or a name (tests/security/leaks.py
checks the captured logs in tests/test_logs.py and tests/e2e/test_request_id_e2e.py)."""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

#: The request id of the request being handled in this task (None outside a request).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ansim_request_id", default=None
)
HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")

#: Attributes every LogRecord has: the rest are the caller's ``extra`` fields.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

access_log = logging.getLogger("ansim.access")


def new_request_id() -> str:
    return secrets.token_hex(8)


def sane_request_id(value: bytes) -> str | None:
    """The caller's id if it is short and plain (it is logged and shown on consoles)."""
    return value.decode() if _SANE.fullmatch(value) else None


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...the record's extra fields}``; the request id
    of the running request when the record has none; ``exception`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if "request_id" not in line:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed (so a second ``configure`` replaces it)."""


def configure(settings: Settings) -> None:
    """The root logger's one handler, at INFO, in the configured format; idempotent (every
    ``create_app`` and dispatcher calls it). With JSON, uvicorn's own loggers write through it
    too (its ``uvicorn.error`` lines become JSON objects)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class RequestId:
    """Pure ASGI (cheap on the SOS path): the request id in and out, and with ``access_log``
    one ``ansim.access`` line per HTTP request (method, route, status, duration, request id;
    the route's template, never the path or query string, which may hold a token or a
    position)."""

    def __init__(self, app: ASGIApp, *, log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == HEADER:
                request_id = sane_request_id(value)
                break
        if request_id is None:
            request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (HEADER, request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            if self.log_requests:
                route = scope.get("route")
                path = getattr(route, "path", None) or "(no route)"
                access_log.info(
                    "%s %s %d",
                    scope.get("method"),
                    path,
                    status,
                    extra={
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )


def request_id_of(scope: Scope) -> str | None:
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None
