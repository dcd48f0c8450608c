"""Outbox relay: committed outbox rows to the incidents stream, at least once.

``kick()`` after a commit publishes within milliseconds; a sweep tick publishes whatever is left
(Redis was down, another process died before relaying). Rows are taken ``FOR UPDATE SKIP
LOCKED`` so several relays share the work instead of racing for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.config import Settings
from app.dispatch import console_log
from app.dispatch import metrics as dispatch_metrics
from app.incidents.store import OutboxRow
from app.redis_line import RedisLine

log = logging.getLogger(__name__)

# Claim and mark in one statement: the mark only becomes visible if the XADDs succeed and the
# transaction commits; if Redis fails the transaction rolls back and the rows stay unpublished.
_CLAIM_SQL = """
WITH claimed AS (
  SELECT id FROM outbox WHERE published_at IS NULL
  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET published_at = now() FROM claimed c WHERE o.id = c.id
RETURNING o.id, o.topic, o.incident_id, o.payload, o.created_at,
          extract(epoch FROM clock_timestamp() - o.created_at) AS age_s
"""


_UNCLAIM_SQL = "UPDATE outbox SET published_at = NULL WHERE id = $1"


@dataclass
class RelayStats:
    published: int = 0
    failures: int = 0
    #: Seconds from the outbox row's transaction start to its XADD (recent window).
    delays: list[float] = field(default_factory=list)

    def observe(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) > 10_000:
            del self.delays[: len(self.delays) - 5_000]


def stream_fields(
    outbox_id: int, topic: str, payload: dict[str, object], created_at: float
) -> dict[str, bytes]:
    return {
        "outbox_id": str(outbox_id).encode(),
        "topic": topic.encode(),
        "payload": orjson.dumps(payload),
        "committed_at": repr(created_at).encode(),
    }


def _xadd(
    redis: Redis | Pipeline,
    settings: Settings,
    outbox_id: int,
    topic: str,
    payload: dict[str, object],
    created_at: datetime,
) -> Any:
    """XADD one outbox row to the incidents stream (on a client: awaitable; on a pipeline:
    queued)."""
    return redis.xadd(
        settings.stream_incidents,
        stream_fields(outbox_id, topic, payload, created_at.timestamp()),  # type: ignore[arg-type]
        maxlen=settings.stream_maxlen,
        approximate=True,
    )


# The direct publish of a phone's SOS (``OutboxRelay.publish``), one round trip. First a hint
# for the dispatchers: whether a fresh on-duty volunteer is within the offer radius of her
# position ("1" or "0"; none when the nearest 50 are all stale: the dispatcher looks itself).
# With five keys the insert has routed the SOS: its console message is appended (once per
# outbox id, as a dispatcher would), and the entry goes to the dispatchers only if a volunteer
# may be near, to be offered the incident. Returns 1 when it went to the dispatchers, else 0.
# KEYS: stream, volunteer GEO, volunteer last-seen[, console log, console dedupe key].
# ARGV: maxlen, lon, lat (both "" without a position), radius in metres, the oldest fresh
# last-seen time, the console log's maxlen, the district, the dedupe TTL and the message (all
# four "" with three keys), then the entry's field pairs.
_PUBLISH = """
local hint = '0'
if ARGV[2] ~= '' then
  local found = redis.call('GEOSEARCH', KEYS[2], 'FROMLONLAT', ARGV[2], ARGV[3],
                           'BYRADIUS', ARGV[4], 'm', 'ASC', 'COUNT', 50)
  if #found == 50 then hint = nil end
  for _, name in ipairs(found) do
    local seen = redis.call('ZSCORE', KEYS[3], name)
    if seen and tonumber(seen) >= tonumber(ARGV[5]) then
      hint = '1'
      break
    end
  end
end
if #KEYS == 5 then
  {APPEND}
  if hint == '0' then return 0 end
end
local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
for i = 10, #ARGV do args[#args + 1] = ARGV[i] end
if hint then
  args[#args + 1] = 'volunteers_near'
  args[#args + 1] = hint
end
redis.call(unpack(args))
return 1
""".replace(
    "{APPEND}",
    console_log.append_once_lua("KEYS[4]", "KEYS[5]", "ARGV[6]", "ARGV[7]", "ARGV[8]", "ARGV[9]"),
)
_RECEIPTS_SQL = (
    "INSERT INTO dispatch_receipt (outbox_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING"
)
#: Receipts kept while PostgreSQL refuses them; past this the oldest are dropped (the
#: reconciler then publishes their rows again, which costs a dispatcher a second look).
_RECEIPTS_MAX = 100_000


async def publish_pending(
    pool: asyncpg.Pool, redis: Redis, settings: Settings, stats: RelayStats | None = None
) -> int:
    """Publish one batch of unpublished rows; returns how many (0 = nothing left)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = sorted(await conn.fetch(_CLAIM_SQL, settings.relay_batch), key=lambda r: r["id"])
        if not rows:
            return 0
        pipe = redis.pipeline(transaction=False)
        for row in rows:
            _xadd(pipe, settings, row["id"], row["topic"], row["payload"], row["created_at"])
        # If Redis fails here the transaction rolls back and the rows stay unpublished.
        await pipe.execute()
    if stats is not None:
        stats.published += len(rows)
        for row in rows:
            stats.observe(float(row["age_s"]))
    return len(rows)


class OutboxRelay:
    """One per process: ``kick()`` is cheap and safe to call from any request."""

    def __init__(self, *, pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        #: The direct publish's own connection (see app/redis_line.py), opened on first use.
        self._line = RedisLine.like(redis, role="publish")
        self._publish = self._line.script(_PUBLISH)
        self.stats = RelayStats()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Outbox ids of SOS routed at intake whose receipt is still to be written.
        self._receipts: list[int] = []
        self._receipts_due = asyncio.Event()
        self._receipt_task: asyncio.Task[None] | None = None
        self._stopping = False

    def kick(self) -> None:
        self._wake.set()

    async def publish(self, row: OutboxRow) -> None:
        """Publish a row its writer committed as published (``insert_incident(publish=True)``):
        one Redis script straight after the commit, no relay round trips on the SOS path. If
        Redis refuses it, the row is marked unpublished again and the relay retries it like any
        other. (If this process dies between the commit and the script, the phone, which heard
        nothing, retries and the replay publishes it again; failing that, the reconciler.)

        The entry carries ``volunteers_near``, looked up in the same round trip (see
        ``_PUBLISH``). A row the insert routed (``row.summary``) has its console message
        appended by the same script, and goes to the dispatchers only if a volunteer may be
        near; otherwise its ``dispatch_receipt`` is written with the next batch (until then,
        the row is "published, not routed": a replay or the reconciler publishes it again, and
        the dispatcher that routes it adds nothing twice)."""
        s = self.settings
        lat, lon = row.payload.get("lat"), row.payload.get("lon")
        located = isinstance(lat, float | int) and isinstance(lon, float | int)
        keys = [s.stream_incidents, s.volunteer_geo_key, s.volunteer_seen_key]
        committed_at = row.created_at.timestamp()
        console: list[Any] = ["", "", "", ""]
        if row.summary is not None:
            keys += [
                s.console_stream,
                console_log.seen_key(s, console_log.outbox_dedupe_key(row.id)),
            ]
            message = console_log.incident_message(
                str(row.payload["kind"]), row.payload, row.summary, committed_at
            )
            console = [
                s.console_maxlen,
                row.summary["district_id"] or "",
                console_log.DEDUPE_TTL_S,
                orjson.dumps(message),
            ]
        fields = stream_fields(row.id, row.topic, row.payload, committed_at)
        try:
            to_dispatchers = await self._line.evalsha(
                self._publish,
                keys,
                [
                    s.stream_maxlen,
                    repr(lon) if located else "",
                    repr(lat) if located else "",
                    s.volunteer_radius_m,
                    time.time() - s.volunteer_stale_s,
                    *console,
                    *(item for pair in fields.items() for item in pair),
                ],
            )
        except Exception as exc:
            log.warning("direct publish failed (%s); handing it to the relay", type(exc).__name__)
            try:
                await self.pool.execute(_UNCLAIM_SQL, row.id)
            except Exception as db_exc:  # the reconciler republishes it later
                log.warning("could not hand outbox %s back (%s)", row.id, type(db_exc).__name__)
            self.kick()
            return
        self.stats.published += 1
        self.stats.observe(time.time() - committed_at)
        if row.summary is not None:
            dispatch_metrics.observe_commit_to_console("intake", committed_at)
        if not to_dispatchers:
            self._receipts.append(row.id)
            if len(self._receipts) > _RECEIPTS_MAX:
                del self._receipts[: len(self._receipts) - _RECEIPTS_MAX]
            self._receipts_due.set()

    async def flush_receipts(self) -> int:
        """Write the receipts of the SOS routed at intake so far (one statement); returns how
        many. If PostgreSQL refuses them they are kept for the next flush."""
        ids, self._receipts = self._receipts, []
        if not ids:
            return 0
        try:
            await self.pool.execute(_RECEIPTS_SQL, ids)
        except BaseException:
            self._receipts[:0] = ids
            raise
        return len(ids)

    async def _write_receipts(self) -> None:
        while True:
            await self._receipts_due.wait()
            # Gather a batch: one statement per flush interval, however many SOS arrive.
            await asyncio.sleep(self.settings.relay_receipt_flush_s)
            self._receipts_due.clear()
            try:
                await self.flush_receipts()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not write receipts (%s); will retry", type(exc).__name__)
                self._receipts_due.set()
                await asyncio.sleep(self.settings.relay_sweep_interval_s)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="outbox-relay")
        if self._receipt_task is None:
            self._receipt_task = asyncio.create_task(self._write_receipts(), name="receipts")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._receipt_task is not None:
            self._receipt_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receipt_task
            self._receipt_task = None
        try:
            await self.flush_receipts()
        except Exception as exc:  # the reconciler publishes their rows again
            log.warning("receipts lost at shutdown (%s)", type(exc).__name__)
        await self._line.aclose()

    async def run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=backoff or self.settings.relay_sweep_interval_s
                )
            self._wake.clear()
            try:
                # A short batch means nothing was left when it was claimed; rows committed since
                # then kicked again after their commit (the sweep tick catches other processes').
                while (
                    await publish_pending(self.pool, self.redis, self.settings, self.stats)
                    >= self.settings.relay_batch
                ):
                    pass
                backoff = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.failures += 1
                # Redis or PostgreSQL is down: rows stay in the outbox; retry on the sweep tick.
                backoff = min(max(backoff * 2, 0.2), self.settings.relay_sweep_interval_s)
                log.warning("outbox relay failed (%s); will retry", type(exc).__name__)


_RECONCILE_SQL = """
WITH lost AS (
  SELECT o.id FROM outbox o
  WHERE o.published_at < now() - make_interval(secs => $1)
    AND o.published_at > now() - make_interval(secs => $2)
    AND NOT EXISTS (SELECT 1 FROM dispatch_receipt r WHERE r.outbox_id = o.id)
  ORDER BY o.id LIMIT $3
  FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox o SET published_at = NULL FROM lost WHERE o.id = lost.id
RETURNING o.id
"""


async def republish_unrouted(pool: asyncpg.Pool, settings: Settings, *, limit: int = 1000) -> int:
    """Rows published long ago that no dispatcher ever processed (no ``dispatch_receipt``) were
    lost with Redis (a restart without persistence, a failover): mark them unpublished so the
    relay publishes them again. Consumers are idempotent, so a slow, not lost, entry published
    twice costs only a second look."""
    rows = await pool.fetch(
        _RECONCILE_SQL,
        settings.relay_reconcile_after_s,
        settings.relay_reconcile_window_s,
        limit,
    )
    return len(rows)
