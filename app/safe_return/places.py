"""Her saved places (home, a friend's): named once, picked by id as a walk's or an escort's
destination. Only she sees them; they go with her account."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.config import Settings
from app.errors import AppError, Conflict, NotFound


class TooManySavedPlaces(AppError):
    status_code = 422


class DestinationInvalid(AppError):
    status_code = 422


_ADD_SQL = """
INSERT INTO saved_place (id, member_id, label, geog)
SELECT $1, $2, $3, ST_SetSRID(ST_MakePoint($5, $4), 4326)::geography
WHERE (SELECT count(*) FROM saved_place WHERE member_id = $2) < $6
ON CONFLICT (member_id, label) DO NOTHING
RETURNING id, created_at
"""
_LIST_SQL = """
SELECT id, label, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, created_at
FROM saved_place WHERE member_id = $1 ORDER BY created_at, id
"""
_ONE_SQL = """
SELECT id, label, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, created_at
FROM saved_place WHERE member_id = $1 AND id = $2
"""


def _out(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "label": r["label"],
        "lat": r["lat"],
        "lon": r["lon"],
        "created_at": r["created_at"].isoformat(),
    }


async def add(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    label: str,
    lat: float,
    lon: float,
) -> dict[str, Any]:
    place_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        # Her row locked: two adds at once cannot both pass the count.
        await conn.execute("SELECT 1 FROM member WHERE id = $1 FOR UPDATE", member_id)
        row = await conn.fetchrow(
            _ADD_SQL, place_id, member_id, label, lat, lon, settings.saved_places_max
        )
        if row is None:
            if await conn.fetchval(
                "SELECT true FROM saved_place WHERE member_id = $1 AND label = $2",
                member_id,
                label,
            ):
                raise Conflict(f"you already have a place called {label!r}")
            raise TooManySavedPlaces(
                f"at most {settings.saved_places_max} saved places; delete one first"
            )
    return {
        "id": str(place_id),
        "label": label,
        "lat": lat,
        "lon": lon,
        "created_at": row["created_at"].isoformat(),
    }


async def list_places(pool: asyncpg.Pool, *, member_id: uuid.UUID) -> list[dict[str, Any]]:
    return [_out(r) for r in await pool.fetch(_LIST_SQL, member_id)]


async def get(
    conn: asyncpg.Pool | asyncpg.Connection, *, member_id: uuid.UUID, place_id: uuid.UUID
) -> dict[str, Any]:
    """One of her places; another member's is the same 404 as none."""
    row = await conn.fetchrow(_ONE_SQL, member_id, place_id)
    if row is None:
        raise NotFound("no such saved place")
    return _out(row)


async def delete(pool: asyncpg.Pool, *, member_id: uuid.UUID, place_id: uuid.UUID) -> None:
    done = await pool.fetchval(
        "DELETE FROM saved_place WHERE member_id = $1 AND id = $2 RETURNING id",
        member_id,
        place_id,
    )
    if done is None:
        raise NotFound("no such saved place")
