"""Privacy retention: the trail of a closed incident is deleted after a retention period.

The incident keeps its district and a position coarsened to about a kilometre (for statistics);
the precise trail and the precise position are gone. Runs as a scheduled job (every dispatcher
runs it periodically; ``ansim retention purge`` runs it once)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

#: Grid (degrees) the position of a purged incident is snapped to: ~1.1 km north-south.
COARSE_GRID_DEG = 0.01

_PURGE_SQL = """
WITH due AS (
  SELECT id FROM incident
  WHERE closed_at IS NOT NULL AND closed_at < now() - make_interval(secs => $1)
    AND NOT ('location_purged' = ANY(flags))
  ORDER BY closed_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), points AS (
  DELETE FROM location_point p USING due WHERE p.incident_id = due.id RETURNING p.id
), upd AS (
  UPDATE incident i
  SET location = ST_SnapToGrid(i.location::geometry, $3)::geography,
      accuracy_m = NULL,
      flags = i.flags || '{location_purged}'::text[]
  FROM due WHERE i.id = due.id
  RETURNING i.id
), ev AS (
  INSERT INTO incident_event (incident_id, kind, actor, data)
  SELECT id, 'trail_purged', 'system:retention', '{}'::jsonb FROM upd
)
SELECT (SELECT count(*) FROM upd) AS incidents, (SELECT count(*) FROM points) AS points
"""


@dataclass(frozen=True)
class PurgeResult:
    incidents: int
    points: int


async def purge_closed_trails(
    pool: asyncpg.Pool, *, retention_s: float, batch: int = 500
) -> PurgeResult:
    """Purge every due incident, in batches so a long backlog never holds long locks."""
    incidents = points = 0
    while True:
        row = await pool.fetchrow(_PURGE_SQL, retention_s, batch, COARSE_GRID_DEG)
        incidents += row["incidents"]
        points += row["points"]
        if row["incidents"] < batch:
            return PurgeResult(incidents, points)


async def run_retention_forever(
    pool: asyncpg.Pool, *, retention_s: float, interval_s: float
) -> None:
    """The scheduled job: purge, sleep, repeat; errors are logged, never fatal."""
    while True:
        try:
            result = await purge_closed_trails(pool, retention_s=retention_s)
            if result.incidents:
                log.info("retention: purged %d trails (%d points)", result.incidents, result.points)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("retention run failed: %s", exc)
        await asyncio.sleep(interval_s)
