"""The API application: lifespan owns the clients; routers live in app/api/."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.api import console_stream
from app.api.router import ROUTERS
from app.config import Settings, get_settings
from app.db import create_engine, create_pool, create_sessionmaker
from app.dispatch.console_log import ConsoleHub
from app.dispatch.coverage import ConsolePresence
from app.dispatch.relay import OutboxRelay
from app.errors import error_response, install_error_handlers
from app.redis import create_redis
from app.runtime import settle_heap
from app.security import redact
from app.security.client_ip import TrustedProxies
from app.security.ratelimit import RateLimit

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Refuse bodies over the limit with 413 before the app reads them (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "PayloadTooLarge", f"request body is over {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(settings: Settings | None = None, *, process_name: str = "ansim-api") -> FastAPI:
    settings = settings or get_settings()
    redact.install()
    if settings.log_format == "json":
        logs.configure(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, application_name=process_name)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.pool = await create_pool(settings, application_name=f"{process_name}-hot")
        app.state.redis = create_redis(settings, client_name=process_name)
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
        app.state.relay = OutboxRelay(pool=app.state.pool, redis=app.state.redis, settings=settings)
        app.state.relay.start()
        app.state.console_hub = ConsoleHub(redis=app.state.redis, settings=settings)
        app.state.console_presence = ConsolePresence(redis=app.state.redis, settings=settings)
        settle_heap()
        try:
            yield
        finally:
            await app.state.console_presence.stop()
            await app.state.console_hub.stop()
            await app.state.relay.stop()
            await app.state.http.aclose()
            await app.state.redis.aclose()
            await app.state.pool.close()
            await engine.dispose()

    app = FastAPI(
        title="Ansim safety-alert service",
        version="0.1.0",
        description=(
            "SOS and panic-button intake, nearest safe places on true geodesic distance, "
            "dispatch to district police consoles and escort volunteers. "
            'Every error has the body `{"error": "Name", "detail": "..."}`.'
        ),
        lifespan=lifespan,
        # /docs is served from our own copy of Swagger UI (app/api/web.py); ReDoc needs a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        if router is console_stream.router and not settings.api_console_stream:
            continue  # intake only: `ansim consoles` serve the stream (docs/operations.md)
        app.include_router(router)
    app.add_middleware(RateLimit, settings=settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(logs.RequestId, log_requests=settings.log_format == "json")
    # Outermost: everything inside sees the client behind the balancer.
    app.add_middleware(TrustedProxies, trusted=settings.trusted_proxies)
    return app
