"""The console process's ASGI app: the console WebSocket, health and metrics, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import logs
from app.api import console_stream, health, metrics
from app.config import Settings, get_settings
from app.db import create_pool
from app.dispatch.console_log import ConsoleHub
from app.dispatch.coverage import ConsolePresence
from app.errors import install_error_handlers
from app.redis import create_redis
from app.runtime import settle_heap
from app.security import redact


def create_console_app(
    settings: Settings | None = None, *, process_name: str = "ansim-consoles"
) -> FastAPI:
    settings = settings or get_settings()
    redact.install()
    if settings.log_format == "json":
        logs.configure(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A socket holds no database connection: sign-in, the snapshot, the session re-check
        # and the access log's batches are short queries on this pool.
        app.state.settings = settings
        app.state.pool = await create_pool(settings, application_name=f"{process_name}-hot")
        app.state.redis = create_redis(settings, client_name=process_name)
        app.state.console_hub = ConsoleHub(redis=app.state.redis, settings=settings)
        app.state.console_presence = ConsolePresence(redis=app.state.redis, settings=settings)
        settle_heap()
        try:
            yield
        finally:
            await app.state.console_presence.stop()
            await app.state.console_hub.stop()
            await app.state.redis.aclose()
            await app.state.pool.close()

    app = FastAPI(
        title="Ansim console stream",
        description="WS /v1/console/stream (docs/dispatch.md)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    for router in (console_stream.router, health.router, metrics.router):
        app.include_router(router)
    return app
