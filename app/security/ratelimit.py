"""Per-credential and per-IP request limits in Redis, on everything except raising an alert.

Raising an SOS (phone or panic button) is never limited: a flood from one credential is folded
into one incident instead (app/incidents/store.py). Fixed one-minute windows: one pipelined
INCR/EXPIRE per request. If Redis is down the limiter lets requests through: limiting abuse is
never worth refusing a dispatcher during an outage.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.errors import error_response

log = logging.getLogger(__name__)

_EXEMPT = (
    re.compile(r"^/v1/alerts/?$"),  # POST only, checked below
    re.compile(r"^/v1/devices/[^/]+/signals/?$"),
)
_UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
_LOGIN = re.compile(r"^/v1/auth/login/?$")


def is_alert_intake(method: str, path: str) -> bool:
    return method == "POST" and any(p.match(path) for p in _EXEMPT)


class RateLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        if path in _UNLIMITED_PATHS or is_alert_intake(method, path):
            await self.app(scope, receive, send)
            return
        redis: Redis | None = getattr(getattr(scope.get("app"), "state", None), "redis", None)
        if redis is not None:
            retry_after = await self._over_limit(redis, scope, path)
            if retry_after is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 4429})
                    return
                response = error_response(
                    429,
                    "TooManyRequests",
                    "too many requests; slow down",
                    headers={"Retry-After": str(retry_after)},
                    retry_after=retry_after,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _over_limit(self, redis: Redis, scope: Scope, path: str) -> int | None:
        now = time.time()
        window = int(now // 60)
        retry_after = max(1, 60 - int(now % 60))
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        checks: list[tuple[str, int]] = []
        if _LOGIN.match(path):
            checks.append((f"login:{ip}", self.settings.rate_limit_login_per_ip_per_min))
        else:
            checks.append((f"ip:{ip}", self.settings.rate_limit_per_ip_per_min))
            credential = _credential(scope)
            if credential:
                checks.append(
                    (f"cred:{credential}", self.settings.rate_limit_per_credential_per_min)
                )
        prefix = self.settings.redis_prefix
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for name, _ in checks:
                    key = f"{prefix}rl:{name}:{window}"
                    pipe.incr(key)
                    pipe.expire(key, 120)
                results = await pipe.execute()
        except RedisError as exc:
            log.warning("rate limiter unavailable (%s); letting the request through", exc)
            return None
        for i, (_, limit) in enumerate(checks):
            if int(results[2 * i]) > limit:
                return retry_after
        return None


def _credential(scope: Scope) -> str | None:
    """A short hash of the bearer token (never the token itself) or the WebSocket token."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return hashlib.sha256(value).hexdigest()[:20]
    query = scope.get("query_string", b"")
    match = re.search(rb"(?:^|&)token=([^&]+)", query)
    return hashlib.sha256(match.group(1)).hexdigest()[:20] if match else None
