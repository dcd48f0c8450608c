"""Incidents written straight into PostgreSQL at chosen moments and places (the analytics and
zones read them back; the SOS path itself is tested elsewhere)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg


@dataclass(frozen=True)
class Seeded:
    lat: float | None
    lon: float | None
    received_at: datetime
    source: str = "app"
    status: str = "new"
    ack_after_s: float | None = None


async def insert_incidents(pool: asyncpg.Pool, rows: list[Seeded]) -> list[uuid.UUID]:
    """Each with its district computed from its position, as the SOS statement does."""
    ids = [uuid.uuid4() for _ in rows]
    await pool.execute(
        """
        INSERT INTO incident (id, emergency_id, source, trigger, status, location, received_at,
                              acknowledged_at, closed_at, district_id)
        SELECT r.id, r.id, r.source, 'button', r.status,
               CASE WHEN r.lat IS NULL THEN NULL
                    ELSE ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)::geography END,
               r.at, r.ack, CASE WHEN r.status IN ('resolved','false_alarm','cancelled')
                                 THEN r.at + interval '1 hour' END,
               (SELECT d.id FROM district d
                WHERE ST_Covers(d.boundary, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326))
                ORDER BY d.code LIMIT 1)
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::float8[],
                    $6::timestamptz[], $7::timestamptz[])
             AS r(id, source, status, lat, lon, at, ack)
        """,
        ids,
        [r.source for r in rows],
        [r.status for r in rows],
        [r.lat for r in rows],
        [r.lon for r in rows],
        [r.received_at for r in rows],
        [
            r.received_at + timedelta(seconds=r.ack_after_s) if r.ack_after_s is not None else None
            for r in rows
        ],
    )
    return ids
