"""Database clients: the SQLAlchemy engine for the domain, a raw asyncpg pool for hot paths."""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.config import Settings


def create_engine(settings: Settings, *, application_name: str = "ansim") -> AsyncEngine:
    return create_async_engine(
        settings.async_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": settings.db_command_timeout_s,
            "timeout": settings.db_connect_timeout_s,
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_POSTGIS_WARM_UP = (
    "SELECT ST_DWithin('SRID=4326;POINT(127 37.5)'::geography,"
    " 'SRID=4326;POINT(127 37.6)'::geography, 1)"
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )
    # The first PostGIS call in a backend loads the library and its projection cache (~20 ms):
    # paid here, when the pool opens, instead of by the SOS that first uses this connection.
    with contextlib.suppress(asyncpg.PostgresError):  # no PostGIS yet: before the migrations
        await conn.execute(_POSTGIS_WARM_UP)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset without the reset query: asyncpg still rolls back an open transaction first.

    The default reset (``RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()``) is one more
    round trip on every release, i.e. on every ``pool.fetch*``; the hot pool keeps no session
    state (no SET, LISTEN, advisory locks or cursors outside a transaction), so it is skipped."""


async def create_pool(
    settings: Settings, *, application_name: str = "ansim-hot", **kwargs: Any
) -> asyncpg.Pool:
    """A raw asyncpg pool: the SOS and device paths run a few prepared statements on it."""
    max_size = kwargs.pop("max_size", settings.db_hot_pool_size)
    pool = await asyncpg.create_pool(
        settings.asyncpg_dsn,
        # Opened up front and never grown: an SOS waits ~1 ms for a busy connection rather
        # than 50-170 ms for a new one (connect, codec introspection, PostGIS warm-up).
        min_size=kwargs.pop("min_size", max_size),
        max_size=max_size,
        init=_init_connection,
        reset=kwargs.pop("reset", _keep_session),
        server_settings={"application_name": application_name},
        command_timeout=settings.db_command_timeout_s,
        timeout=settings.db_connect_timeout_s,
        **kwargs,
    )
    assert pool is not None
    return pool
