"""Her position in Redis: the streams are trimmed by age, and an erasure reaches them.

Three streams hold copies of positions: the incidents stream (the outbox payloads), its
dead-letter stream, and the console log (each incident message carries the summary with lat/lon).
Length caps alone keep them for months on a quiet city, so every dispatcher's retention job
trims them by age (``trim_streams``, XTRIM MINID), well inside the trail retention. An entry of
the incidents stream is trimmed only once every consumer group is past it: below the oldest
pending entry and the last delivered one, so a slow or dead dispatcher's work is never lost.

``/v1/me/erase`` writes an outbox row of topic ``TOPIC_ERASED`` listing her incidents
(``app.incidents.retention.forget_positions``); the
dispatcher that reads it deletes every entry of the three streams that names one of them
(``erase_incidents``), after the erasure committed. See docs/security.md ("Where her position is
held, for how long")."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.config import Settings
from app.dispatch.routing import PoisonEntry
from app.incidents.retention import TOPIC_ERASED

log = logging.getLogger(__name__)

#: Entries read per XRANGE while looking for an erased woman's entries: a short read each, so
#: Redis serves the SOS path between pages.
SCAN_PAGE = 1000


@dataclass(frozen=True)
class TrimResult:
    incidents: int
    dead_letters: int
    console: int


def _id_at(ms: float) -> str:
    return f"{max(0, int(ms))}-0"


def _key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def _redis_ms(redis: Redis) -> float:
    """Redis's clock, which stamps the entry ids (not this host's)."""
    seconds, micros = await redis.time()
    return seconds * 1000 + micros / 1000


async def processed_floor(redis: Redis, settings: Settings) -> str | None:
    """The id below which every consumer group of the incidents stream is done: the oldest
    entry still pending, else the last one delivered. None without a stream or a group (its
    entries are not processed yet: nothing may go)."""
    try:
        groups: Any = await redis.xinfo_groups(settings.stream_incidents)
    except ResponseError:  # no such stream
        return None
    if not groups:
        return None
    floor: tuple[int, int] | None = None
    for group in groups:
        name, last = group["name"], group["last-delivered-id"]
        bound = _key(last)
        if int(group["pending"]):
            summary: Any = await redis.xpending(settings.stream_incidents, name)
            if summary.get("min") is not None:
                bound = min(bound, _key(summary["min"]))
        floor = bound if floor is None else min(floor, bound)
    assert floor is not None
    return f"{floor[0]}-{floor[1]}"


async def trim_streams(redis: Redis, settings: Settings) -> TrimResult:
    """Trim the three streams by age (exactly: a ``~`` trim leaves whole nodes behind); the
    incidents stream never past ``processed_floor``. Returns the entries removed from each."""
    now_ms = await _redis_ms(redis)
    floor = await processed_floor(redis, settings)
    incidents = 0
    if floor is not None:
        cutoff = _id_at(now_ms - settings.stream_retention_s * 1000)
        minid = cutoff if _key(cutoff) <= _key(floor) else floor
        incidents = int(
            await redis.xtrim(settings.stream_incidents, minid=minid, approximate=False)
        )
    dead = int(
        await redis.xtrim(
            settings.stream_dead_letter,
            minid=_id_at(now_ms - settings.dead_letter_retention_s * 1000),
            approximate=False,
        )
    )
    console = int(
        await redis.xtrim(
            settings.console_stream,
            minid=_id_at(now_ms - settings.console_retention_s * 1000),
            approximate=False,
        )
    )
    return TrimResult(incidents, dead, console)


def is_erase_entry(fields: dict[bytes, bytes]) -> bool:
    return fields.get(b"topic") == TOPIC_ERASED.encode()


def _names(fields: dict[bytes, bytes], needles: list[bytes]) -> bool:
    return any(n in value for value in fields.values() for n in needles)


async def _matching(
    redis: Redis, stream: str, needles: list[bytes], before: str | None
) -> list[bytes]:
    """Ids of the entries of ``stream`` (below ``before``) that name one of ``needles``, read a
    page at a time. The scan is bounded by the age trim: at most a retention period of
    entries."""
    found: list[bytes] = []
    start = "-"
    end = f"({before}" if before else "+"
    while True:
        rows: Any = await redis.xrange(stream, min=start, max=end, count=SCAN_PAGE)
        for entry_id, fields in rows:
            if _names(fields, needles):
                found.append(entry_id)
        if len(rows) < SCAN_PAGE:
            return found
        last = rows[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)


async def erase_incidents(
    redis: Redis, settings: Settings, incident_ids: Iterable[uuid.UUID], *, before: str | None
) -> int:
    """Delete every entry of the incidents stream, its dead letters and the console log that
    names one of ``incident_ids``; returns how many. In the incidents stream only entries
    before ``before`` (the erasure's own entry) that no dispatcher is processing go: one still
    pending keeps its effects (it is trimmed by age once processed). Deleting console entries
    moves the log's ``max-deleted-entry-id``: a console reconnecting from before them gets a
    snapshot, as after a trim."""
    needles = [str(i).encode() for i in incident_ids]
    if not needles:
        return 0
    deleted = 0
    candidates = await _matching(redis, settings.stream_incidents, needles, before)
    if candidates:
        pipe = redis.pipeline(transaction=False)
        for entry_id in candidates:
            pipe.xpending_range(
                settings.stream_incidents,
                settings.stream_group,
                min=entry_id,
                max=entry_id,
                count=1,
            )
        try:
            pending = await pipe.execute()
        except ResponseError:  # no group: nothing was processed, nothing goes
            pending = [[True]] * len(candidates)
        done = [e for e, p in zip(candidates, pending, strict=True) if not p]
        if done:
            deleted += int(await redis.xdel(settings.stream_incidents, *done))
    for stream in (settings.stream_dead_letter, settings.console_stream):
        ids = await _matching(redis, stream, needles, None)
        if ids:
            deleted += int(await redis.xdel(stream, *ids))
    return deleted


async def handle_erase_entry(
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    entry_id: str,
    fields: dict[bytes, bytes],
) -> int:
    """A dispatcher's handler for an erasure's entry; safe to run again (a redelivery deletes
    what is left). Writes its ``dispatch_receipt`` so the reconciler leaves it alone."""
    try:
        outbox_id = int(fields[b"outbox_id"])
        incidents = [uuid.UUID(i) for i in orjson.loads(fields[b"payload"])["incidents"]]
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise PoisonEntry(f"malformed erase entry: {exc!r}") from exc
    deleted = await erase_incidents(redis, settings, incidents, before=entry_id)
    await pool.execute(
        "INSERT INTO dispatch_receipt (outbox_id) VALUES ($1) ON CONFLICT DO NOTHING", outbox_id
    )
    log.info("erasure: deleted %d stream entries of %d incidents", deleted, len(incidents))
    return deleted
