"""The schema is built by the migrations: upgrade from empty, downgrade to nothing, up again."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Base
from migrations.helpers import include_object
from tests.conftest import alembic_config


async def _recreate(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def _diff_with_models(url: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"include_object": include_object, "compare_type": True}
                    ),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()


async def test_migrations_upgrade_from_empty_match_the_models_and_downgrade_cleanly(settings):
    base = settings.asyncpg_dsn.rsplit("/", 1)[0]
    name = "ansim_test_migrations"
    await _recreate(base + "/postgres", name)
    dsn = f"{base}/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    cfg = alembic_config(url)

    await asyncio.to_thread(command.upgrade, cfg, "head")
    assert {"incident", "safe_place", "district", "outbox"} <= await _tables(dsn)
    assert await _diff_with_models(url) == []

    await asyncio.to_thread(command.downgrade, cfg, "base")
    assert await _tables(dsn) <= {"alembic_version"}
    await asyncio.to_thread(command.upgrade, cfg, "head")
    assert "incident" in await _tables(dsn)
