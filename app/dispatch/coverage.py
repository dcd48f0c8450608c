"""Coverage: the service knows which consoles are open, and an incident whose channel nobody
watches is given to consoles that are open; when nobody at all watches it, supervisors are paged.

**Presence.** Every API process keeps its open consoles in one Redis sorted set, a member
``"<channel> <connection>"`` per channel of each console (``city_wide``, or ``district:<id>``
for each of its dispatcher's districts), scored by the time it expires; the process refreshes
its members every ``console_presence_refresh_s`` and removes a console's when its socket ends.
A process that dies stops refreshing: its consoles are gone after ``console_presence_ttl_s``.

**The rule** (``audience``), for an open incident whose own channel has no open console:

- no district (no position, or outside every district): its channel is the city-wide one; with
  no city-wide console open, every open district console is given it (``unlocated`` /
  ``outside_city`` on the console);
- a district with no open console: the consoles of the districts that touch it are given it
  ("covering for ..."), beside the city-wide ones, which see every incident; with neither,
  every open district console;
- nobody at all: a ``new`` incident is flagged ``unwatched`` (until a console acknowledges it)
  and the on-call supervisors are paged at once.

The districts given an incident are written to ``incident.covered_by`` (their dispatchers may
then read and act on it, ``console_service.in_scope``) with a ``covered`` timeline event, whose
console message, like every later one of that incident, goes to them too. The sweep runs in
every dispatcher every ``coverage_poll_s`` and locks rows with SKIP LOCKED."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from app.config import Settings
from app.dispatch.routing import record_event
from app.notifications import sender as notification_sender
from app.notifications.service import page_on_call

log = logging.getLogger(__name__)

CITY_WIDE = "city_wide"
_DISTRICT = "district:"


def presence_key(settings: Settings) -> str:
    return f"{settings.redis_prefix}presence:consoles"


def console_channels(*, city_wide: bool, district_ids: frozenset[uuid.UUID]) -> list[str]:
    """The channels a dispatcher's console watches."""
    if city_wide:
        return [CITY_WIDE]
    return sorted(f"{_DISTRICT}{d}" for d in district_ids)


class ConsolePresence:
    """This process's open consoles, kept in Redis while they are open."""

    def __init__(self, *, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.key = presence_key(settings)
        self._members: dict[str, list[str]] = {}
        self._task: asyncio.Task[None] | None = None

    async def join(self, channels: list[str]) -> str:
        """A console opened: it counts at once, across every process."""
        connection = uuid.uuid4().hex
        members = [f"{channel} {connection}" for channel in channels]
        self._members[connection] = members
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresh_loop(), name="console-presence")
        with contextlib.suppress(Exception):  # Redis down: the refresh loop adds it later
            await self.redis.zadd(self.key, dict.fromkeys(members, self._expiry()))
        return connection

    async def leave(self, connection: str) -> None:
        members = self._members.pop(connection, [])
        if members:
            with contextlib.suppress(Exception):  # it expires by itself
                await self.redis.zrem(self.key, *members)

    def _expiry(self) -> float:
        return time.time() + self.settings.console_presence_ttl_s

    async def _refresh_loop(self) -> None:
        while self._members:
            await asyncio.sleep(self.settings.console_presence_refresh_s)
            members = [m for ms in list(self._members.values()) for m in ms]
            if not members:
                continue
            try:
                await self.redis.zadd(self.key, dict.fromkeys(members, self._expiry()))
            except Exception as exc:
                log.warning("console presence refresh failed (%s)", type(exc).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for connection in list(self._members):
            await self.leave(connection)


@dataclass(frozen=True)
class Watch:
    """Who is watching now: open city-wide consoles, open consoles per district."""

    city_wide: int = 0
    districts: dict[uuid.UUID, int] = field(default_factory=dict)

    @property
    def anyone(self) -> bool:
        return bool(self.city_wide or self.districts)


async def read_watch(redis: Redis, settings: Settings) -> Watch:
    """The open consoles of every process (expired members are dropped on the way)."""
    now = time.time()
    key = presence_key(settings)
    pipe = redis.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", now)
    pipe.zrangebyscore(key, now, "+inf")
    _removed, members = await pipe.execute()
    city_wide = 0
    districts: dict[uuid.UUID, int] = {}
    for raw in members:
        channel = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ", 1)[0]
        if channel == CITY_WIDE:
            city_wide += 1
        elif channel.startswith(_DISTRICT):
            district = uuid.UUID(channel[len(_DISTRICT) :])
            districts[district] = districts.get(district, 0) + 1
    return Watch(city_wide=city_wide, districts=districts)


@dataclass(frozen=True)
class Audience:
    """Who is given an incident beyond its own channel and the city-wide consoles."""

    covered_by: frozenset[uuid.UUID]
    #: Some open console gets it.
    watched: bool


def audience(
    district_id: uuid.UUID | None,
    watch: Watch,
    neighbours: dict[uuid.UUID, frozenset[uuid.UUID]],
) -> Audience:
    """The coverage rule (see the module's docstring)."""
    watched = frozenset(watch.districts)
    if district_id is not None:
        if district_id in watched:
            return Audience(frozenset(), True)
        near = neighbours.get(district_id, frozenset()) & watched
        if near:
            return Audience(near, True)
    if watch.city_wide:
        return Audience(frozenset(), True)
    return Audience(watched, bool(watched))


_NEIGHBOURS_SQL = """
SELECT a.id, array_agg(b.id ORDER BY b.code) AS near
FROM district a JOIN district b ON b.id <> a.id AND ST_DWithin(a.boundary, b.boundary, $1)
GROUP BY a.id
"""

# One group of open incidents (one district, or none: $1 NULL) given to the districts $2; with
# $3 (nobody watches them) a ``new`` one is flagged unwatched. Returns what changed.
_COVER_SQL = """
WITH c AS (
  SELECT i.id, i.covered_by AS was_covered, i.unwatched_at IS NOT NULL AS was_unwatched
  FROM incident i
  WHERE i.closed_at IS NULL AND {group}
    AND (NOT i.covered_by @> $2::uuid[] OR ($3 AND i.status = 'new' AND i.unwatched_at IS NULL))
  ORDER BY i.received_at LIMIT $4
  FOR NO KEY UPDATE OF i SKIP LOCKED
)
UPDATE incident i
SET covered_by = ARRAY(SELECT DISTINCT x FROM unnest(i.covered_by || $2::uuid[]) x ORDER BY x),
    unwatched_at = CASE WHEN $3 AND i.status = 'new' THEN coalesce(i.unwatched_at, now())
                        ELSE i.unwatched_at END,
    updated_at = now()
FROM c WHERE i.id = c.id
RETURNING i.id, i.status, i.location IS NULL AS unlocated, i.covered_by, c.was_covered,
          i.unwatched_at IS NOT NULL AND NOT c.was_unwatched AS newly_unwatched
"""
_COVER_DISTRICT_SQL = _COVER_SQL.format(group="i.district_id = $1::uuid")
_COVER_UNDISTRICTED_SQL = _COVER_SQL.format(group="i.district_id IS NULL AND $1::uuid IS NULL")


@dataclass
class Coverage:
    """The sweep's state in one dispatcher: the districts and their neighbours."""

    pool: asyncpg.Pool
    redis: Redis
    settings: Settings
    batch: int = 200
    _neighbours: dict[uuid.UUID, frozenset[uuid.UUID]] = field(default_factory=dict)
    _districts: frozenset[uuid.UUID] = frozenset()

    async def _load_districts(self) -> None:
        """The districts, and their neighbours again when they changed (an import)."""
        districts = frozenset(await self.pool.fetchval("SELECT array_agg(id) FROM district") or ())
        if districts != self._districts:
            rows = await self.pool.fetch(
                _NEIGHBOURS_SQL, self.settings.coverage_neighbour_tolerance
            )
            self._neighbours = {r["id"]: frozenset(r["near"]) for r in rows}
            self._districts = districts

    async def sweep(self) -> int:
        """Give every open incident that nobody watches to consoles that are open (or flag it
        and page); returns how many incidents changed (their events are in the outbox)."""
        await self._load_districts()
        watch = await read_watch(self.redis, self.settings)
        changed = 0
        groups: list[uuid.UUID | None] = [None, *(self._districts - set(watch.districts))]
        for district_id in groups:
            who = audience(district_id, watch, self._neighbours)
            if who.watched and not who.covered_by:
                continue  # the city-wide consoles (or its own) have it: nothing to add
            while True:
                n = await self._cover(district_id, who)
                changed += n
                if n < self.batch:
                    break
        return changed

    async def _cover(self, district_id: uuid.UUID | None, who: Audience) -> int:
        sql = _COVER_UNDISTRICTED_SQL if district_id is None else _COVER_DISTRICT_SQL
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                sql, district_id, sorted(who.covered_by), not who.watched, self.batch
            )
            for row in rows:
                reason = (
                    "covering"
                    if district_id is not None
                    else ("unlocated" if row["unlocated"] else "outside_city")
                )
                added = set(row["covered_by"]) - set(row["was_covered"])
                if added:
                    await record_event(
                        conn,
                        row["id"],
                        "covered",
                        {"reason": reason, "districts": sorted(str(d) for d in added)},
                        publish=True,
                    )
                if row["newly_unwatched"]:
                    paged = await page_on_call(
                        conn,
                        self.settings,
                        incident_id=row["id"],
                        reason=f"unwatched ({reason})",
                        level=0,
                        dedupe=f"unwatched:{row['id']}",
                    )
                    await record_event(
                        conn,
                        row["id"],
                        "unwatched",
                        {"reason": reason, "paged": paged},
                        publish=True,
                    )
        if any(row["newly_unwatched"] for row in rows):
            notification_sender.kick()  # the pages, now committed
        return len(rows)


async def coverage_status(
    pool: asyncpg.Pool, redis: Redis, settings: Settings
) -> dict[str, object]:
    """What operators and the city-wide console see: open consoles per channel, the districts
    nobody watches right now, and the open incidents flagged unwatched."""
    watch = await read_watch(redis, settings)
    rows = await pool.fetch("SELECT id, code, name FROM district ORDER BY code")
    unwatched = await pool.fetchval(
        "SELECT count(*) FROM incident WHERE closed_at IS NULL AND unwatched_at IS NOT NULL"
    )
    districts = [
        {
            "id": str(r["id"]),
            "code": r["code"],
            "name": r["name"],
            "consoles": watch.districts.get(r["id"], 0),
        }
        for r in rows
    ]
    return {
        "city_wide_consoles": watch.city_wide,
        "districts": districts,
        "unwatched_districts": [d["code"] for d in districts if not d["consoles"]],
        "unwatched_incidents": unwatched,
    }
