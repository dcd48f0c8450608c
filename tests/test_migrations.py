"""The schema is built by the migrations: upgrade from empty, downgrade to nothing, up again."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
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


def _beside(settings, suffix: str) -> str:
    """A database name derived from the configured one (``ansim_test_suite`` gives
    ``ansim_test_suite_migrations``): two runs given two databases never share these either."""
    return settings.asyncpg_dsn.rsplit("/", 1)[1].split("?")[0] + suffix


async def _empty_database(settings, name: str) -> tuple[str, str, Config]:
    """A new empty database beside the test one: its asyncpg DSN, SQLAlchemy URL, Alembic
    config."""
    base = settings.asyncpg_dsn.rsplit("/", 1)[0]
    await _recreate(base + "/postgres", name)
    dsn = f"{base}/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    return dsn, url, alembic_config(url)


async def test_migrations_upgrade_from_empty_match_the_models_and_downgrade_cleanly(settings):
    dsn, url, cfg = await _empty_database(settings, _beside(settings, "_migrations"))

    await asyncio.to_thread(command.upgrade, cfg, "head")
    assert {"incident", "safe_place", "district", "outbox"} <= await _tables(dsn)
    assert await _diff_with_models(url) == []

    await asyncio.to_thread(command.downgrade, cfg, "base")
    assert await _tables(dsn) <= {"alembic_version"}
    await asyncio.to_thread(command.upgrade, cfg, "head")
    assert "incident" in await _tables(dsn)


async def test_the_access_log_survives_a_round_trip_through_one_row_per_reader(settings):
    """0009 folds the readers of one write into one row; its downgrade gives each reader a row
    of their own again (at the same time, for the same incident and reason), and the upgrade
    after it keeps them all. The append-only trigger is back on after each."""
    name = _beside(settings, "_migr")
    dsn, url, cfg = await _empty_database(settings, name)
    readers = sorted(uuid.uuid4() for _ in range(3))
    alone, incident, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        await asyncio.to_thread(command.upgrade, cfg, "head")
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO location_access (staff_ids, incident_id, reason) VALUES"
                " ($1, $2, 'console_stream'), ($3, $4, 'console_detail')",
                readers,
                incident,
                [alone],
                other,
            )
            at = await conn.fetchval("SELECT min(at) FROM location_access")
            expected = sorted(
                [(s, incident, "console_stream") for s in readers]
                + [(alone, other, "console_detail")]
            )

            await asyncio.to_thread(command.downgrade, cfg, "0008_lean_incident")
            rows = await conn.fetch("SELECT staff_id, incident_id, reason, at FROM location_access")
            assert sorted(tuple(r)[:3] for r in rows) == expected
            assert {r["at"] for r in rows} == {at}
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute("UPDATE location_access SET reason = 'x'")

            await asyncio.to_thread(command.upgrade, cfg, "head")
            rows = await conn.fetch("SELECT staff_ids, incident_id, reason FROM location_access")
            assert sorted((*r["staff_ids"], r["incident_id"], r["reason"]) for r in rows) == (
                expected
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute("UPDATE location_access SET reason = 'x'")
        finally:
            await conn.close()
        assert await _diff_with_models(url) == []
    finally:
        admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
