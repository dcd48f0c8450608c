"""Privacy retention: the trail of a closed incident is deleted after a retention period.

The incident keeps its district and a position coarsened to about a kilometre (for statistics);
the precise trail and the precise position are gone. Processed outbox rows are deleted after
their own retention. Every dispatcher runs both periodically, and trims the Redis copies
(app/dispatch/stream_retention.py). An erasure reaches the outbox and Redis through
``forget_positions``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.incidents.timeline import OUTBOX_WRITTEN
from app.models import Outbox

#: The outbox topic of an erasure; its payload lists her incidents and holds nothing else.
TOPIC_ERASED = "member.erased"

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


# The outbox keeps a processed row for ``outbox_retention_s``; the position in a report's
# payload served only the dispatcher's volunteer lookup, long done for a closed incident.
_FORGET_OUTBOX_SQL = text(
    "UPDATE outbox SET payload = payload - 'lat' - 'lon'"
    " WHERE incident_id = ANY(:ids) AND (payload ? 'lat' OR payload ? 'lon')"
)


async def forget_positions(session: AsyncSession, *, incident_ids: Sequence[uuid.UUID]) -> None:
    """Part of an erasure (same transaction): drop the positions from the outbox rows of her
    incidents, and queue the deletion of every Redis stream entry that names one of them (an
    outbox row of topic ``TOPIC_ERASED``, relayed after the commit; the dispatcher that reads
    it deletes them, app/dispatch/stream_retention.py)."""
    if not incident_ids:
        return
    await session.execute(_FORGET_OUTBOX_SQL, {"ids": list(incident_ids)})
    session.info[OUTBOX_WRITTEN] = True
    session.add(
        Outbox(
            topic=TOPIC_ERASED,
            incident_id=None,
            payload={"kind": "erased", "incidents": sorted(str(i) for i in incident_ids)},
        )
    )
    await session.flush()
