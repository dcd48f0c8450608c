"""Privacy retention: the trail of a closed incident is deleted after a retention period.

The incident keeps its district and a position coarsened to about a kilometre (for statistics);
the precise trail and the precise position are gone. Processed outbox rows are deleted after
their own retention. Every dispatcher runs both periodically."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

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


_OUTBOX_SQL = """
WITH done AS (
  SELECT o.id FROM outbox o JOIN dispatch_receipt r ON r.outbox_id = o.id
  WHERE o.published_at < now() - make_interval(secs => $1)
  ORDER BY o.id LIMIT $2
  FOR UPDATE OF o SKIP LOCKED
), receipts AS (
  DELETE FROM dispatch_receipt r USING done WHERE r.outbox_id = done.id
)
DELETE FROM outbox o USING done WHERE o.id = done.id
"""


async def purge_processed_outbox(
    pool: asyncpg.Pool, *, retention_s: float, batch: int = 5000
) -> int:
    """Delete outbox rows (and their receipts) processed longer ago than ``retention_s``.

    Only rows a dispatcher has routed go; unpublished or never-processed rows stay for the relay
    and the reconciler. ``retention_s`` must exceed the reconciler's window."""
    deleted = 0
    while True:
        status = await pool.execute(_OUTBOX_SQL, retention_s, batch)
        count = int(status.split()[-1])
        deleted += count
        if count < batch:
            return deleted
