"""Credentials never reach the logs.

Our own code logs no tokens, secrets, PINs or positions (tests/security/test_privacy.py checks
it). The server's request lines are another matter: uvicorn logs every WebSocket handshake with
its query string, and a console may authenticate with ``?token=as_...``. This filter rewrites
such records before any handler sees them."""

from __future__ import annotations

import logging
import re

_QUERY_SECRET = re.compile(r"(?i)((?:^|[?&])(?:token|access_token|secret|pin|password)=)[^&\s\"']*")
#: Member, staff and guardian-view tokens (``am_``, ``as_``, ``ag_``).
_BEARER = re.compile(r"\b(a[gms]_)[A-Za-z0-9_-]{16,}")
REDACTED = "[redacted]"

#: Loggers whose records may carry a request target (path and query string).
REQUEST_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1" + REDACTED, _QUERY_SECRET.sub(r"\1" + REDACTED, text))


class RedactCredentials(logging.Filter):
    """Redacts the message and each string argument in place (uvicorn's access formatter
    unpacks ``record.args``, so their shape is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install() -> None:
    """Idempotent: called by every ``create_app``."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
