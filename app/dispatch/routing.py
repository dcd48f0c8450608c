"""What a dispatcher does with one stream entry, and the acknowledgement-deadline escalation.

Each step is idempotent by the outbox id: the routing transaction is guarded by a
``dispatch_receipt`` row, the console message by a Redis ``SET NX``, notifications by their
dedupe keys in the ``notification`` queue (``app/notifications``)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from app.config import Settings
from app.dispatch import console_log, presence
from app.dispatch import metrics as dispatch_metrics
from app.dispatch.gateways import Gateway
from app.incidents.console_service import SUMMARY_COLUMNS, incident_summary, summary_from_row
from app.incidents.route_sql import link_lateral_sql, routed_event_sql
from app.incidents.status import CLOSED
from app.incidents.store import TOPIC_UPDATED
from app.interop.subscriptions import enqueue as agency_enqueue
from app.interop.subscriptions import enqueue_sql as agency_enqueue_sql
from app.notifications import sender as notification_sender
from app.notifications.service import enqueue_for_event, page_on_call

log = logging.getLogger(__name__)

ACTOR = "dispatch"
#: Timeline kinds that escalate at once, and whether we raise the level (the cancel endpoint
#: already raised it for a duress cancel and for repeated wrong PINs).
ESCALATING = {"duress": True, "duress_cancel": False, "wrong_pin_escalation": False}


class PoisonEntry(ValueError):
    """An entry that can never be processed (malformed); it goes to the dead-letter stream."""


@dataclass(frozen=True)
class Entry:
    outbox_id: int
    topic: str
    incident_id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    committed_at: float | None
    #: Whether a fresh volunteer was within the offer radius when the API published the entry
    #: (``OutboxRelay.publish``); None when nobody looked (the relay's entries).
    volunteers_near: bool | None = None
    #: Its id in the incidents stream (to acknowledge it with its last effect).
    stream_id: str | None = None


def parse_entry(fields: dict[bytes, bytes], stream_id: str | None = None) -> Entry:
    try:
        payload = orjson.loads(fields[b"payload"])
        committed = fields.get(b"committed_at")
        near = fields.get(b"volunteers_near")
        return Entry(
            outbox_id=int(fields[b"outbox_id"]),
            topic=fields[b"topic"].decode(),
            incident_id=uuid.UUID(str(payload["incident_id"])),
            kind=str(payload["kind"]),
            payload=payload,
            committed_at=float(committed) if committed else None,
            volunteers_near=None if near is None else near == b"1",
            stream_id=stream_id,
        )
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise PoisonEntry(f"malformed entry: {exc!r}") from exc


@dataclass
class Context:
    pool: asyncpg.Pool
    redis: Redis
    settings: Settings
    gateways: dict[str, Gateway]


async def record_event(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    kind: str,
    data: dict[str, Any],
    *,
    publish: bool = False,
) -> None:
    """A dispatch timeline event; with ``publish``, its outbox row too (consoles hear of it)."""
    await conn.execute(
        "INSERT INTO incident_event (incident_id, kind, actor, data) VALUES ($1, $2, $3, $4)",
        incident_id,
        kind,
        ACTOR,
        data,
    )
    if publish:
        await conn.execute(
            "INSERT INTO outbox (topic, incident_id, payload) VALUES ($1, $2, $3)",
            TOPIC_UPDATED,
            incident_id,
            {"incident_id": str(incident_id), "kind": kind, **data},
        )


_LOCK_COLUMNS = """
       i.id, i.source, i.status, i.member_id, i.safe_place_id, i.district_id, i.received_at,
       i.escalation_level, i.emergency_id, i.location IS NOT NULL AS located,
       ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon,
       EXISTS (SELECT 1 FROM guardian g WHERE g.member_id = i.member_id) AS has_guardians
"""
# The receipt and the row lock in one round trip: ``first`` is NULL when this outbox id was
# routed before (a redelivery), and no row at all means the incident is gone. NO KEY UPDATE
# still serialises every writer of the row but does not block the foreign-key checks of rows
# that reference the incident (location_access from every console, timeline events).
_RECEIPT_LOCK_SQL = f"""
WITH receipt AS (
  INSERT INTO dispatch_receipt (outbox_id) VALUES ($2) ON CONFLICT DO NOTHING RETURNING true
)
SELECT (SELECT true FROM receipt) AS first, {_LOCK_COLUMNS}
FROM incident i WHERE i.id = $1 FOR NO KEY UPDATE OF i
"""
# The acknowledgement deadline and the ``routed`` event of a new report ($1 incident, $2 the
# deadline in seconds, $3 the actor), and the other-source report it may belong with ($4 the
# time window, $5 the radius).
_ROUTE_UPDATE = """
UPDATE incident i SET ack_deadline_at = CASE WHEN status = 'new' AND ack_deadline_at IS NULL
    THEN received_at + make_interval(secs => $2::float8) ELSE ack_deadline_at END
"""


# A new report in one statement (inside the routing transaction), by the report's source: the
# deadline, the ``routed`` event, the summary for the console message, and the report it may
# belong with.
_ROUTE_NEW_SQL = {
    source: f"""
WITH u AS ({_ROUTE_UPDATE} WHERE id = $1 RETURNING i.*
), routed AS ({routed_event_sql("u r", "$3::text")})
SELECT {SUMMARY_COLUMNS}, l.link_id, l.link_emergency_id
FROM u i LEFT JOIN district d ON d.id = i.district_id
LEFT JOIN {link_lateral_sql(source, "$4", "$5")} ON true
"""
    for source in ("app", "button", "sensor", "safe_return")
}
# The common case, a phone's new report with no volunteer near and nothing to link, as ONE
# statement and no explicit transaction (a statement is its own transaction): the receipt, the
# deadline, the event and the summary. With a report to link it writes nothing and says so
# (``needs_link``): the caller then routes it in a transaction. ``first`` is NULL for a
# redelivery (the summary is then the current one) and there is no row if the incident is gone.
_ROUTE_REPORTED_SQL = f"""
WITH cur AS (SELECT i.* FROM incident i WHERE i.id = $1
), lnk AS (SELECT l.link_id FROM cur i, {link_lateral_sql("app", "$4", "$5")}
), receipt AS (
  INSERT INTO dispatch_receipt (outbox_id)
  SELECT $6 FROM cur WHERE NOT EXISTS (SELECT 1 FROM lnk)
  ON CONFLICT DO NOTHING RETURNING true
), u AS (
  -- Only if the intake did not set the deadline (it does for a phone's SOS): an UPDATE rewrites
  -- the row and every index entry of it.
  {_ROUTE_UPDATE} FROM receipt WHERE i.id = $1 AND i.ack_deadline_at IS NULL RETURNING i.*
), routed AS ({routed_event_sql("cur r JOIN receipt ON true", "$3::text")}
), agency AS ({
    agency_enqueue_sql(
        incident="$1", outbox="$6", kind="'reported'", deadline="$7", source="receipt"
    )
})
SELECT (SELECT true FROM receipt) AS first, EXISTS (SELECT 1 FROM lnk) AS needs_link,
       EXISTS (SELECT 1 FROM agency) AS agency_queued,
       i.member_id, EXISTS (SELECT 1 FROM guardian g WHERE g.member_id = i.member_id)
         AS has_guardians, {SUMMARY_COLUMNS}
FROM (SELECT * FROM u UNION ALL SELECT * FROM cur WHERE NOT EXISTS (SELECT 1 FROM u)) i
LEFT JOIN district d ON d.id = i.district_id
"""


@dataclass
class Routed:
    """What the routing transaction learnt, for the steps after its commit."""

    summary: dict[str, Any] | None = None
    offered: int = 0


async def _route_new(ctx: Context, conn: asyncpg.Connection, inc: asyncpg.Record) -> Routed:
    s = ctx.settings
    incident_id = inc["id"]
    if inc["district_id"] is None and inc["safe_place_id"] is not None:
        # A button: the store's position and district, whatever the report carried.
        await conn.execute(
            """UPDATE incident i SET location = coalesce(i.location, p.geog),
                 district_id = (SELECT d.id FROM district d
                                WHERE ST_Covers(d.boundary, p.geog::geometry)
                                ORDER BY d.code LIMIT 1)
               FROM safe_place p WHERE p.id = i.safe_place_id AND i.id = $1""",
            incident_id,
        )
    row = await conn.fetchrow(
        _ROUTE_NEW_SQL[inc["source"]],
        incident_id,
        s.ack_deadline_s,
        ACTOR,
        s.link_window_s,
        s.link_radius_m,
    )
    summary: dict[str, Any] | None = summary_from_row(row)
    if row["link_id"] is not None:
        await _link(conn, inc, row["link_id"], row["link_emergency_id"])
        summary = None  # its emergency id changed: read again after the commit
    offered = 0
    if row["lat"] is not None and row["status"] not in CLOSED:
        offered = await _offer_volunteers(
            ctx, conn, incident_id=incident_id, lat=row["lat"], lon=row["lon"], level=0
        )
    return Routed(summary=summary, offered=offered)


async def _link(
    conn: asyncpg.Connection,
    inc: asyncpg.Record,
    other_id: uuid.UUID,
    other_emergency_id: uuid.UUID,
) -> None:
    """A phone SOS and a button press close in space and time are one emergency."""
    await conn.execute(
        "UPDATE incident SET emergency_id = $2 WHERE emergency_id = $3 OR id = $1",
        inc["id"],
        other_emergency_id,
        inc["emergency_id"] or inc["id"],
    )
    await record_event(conn, inc["id"], "linked", {"with": str(other_id)}, publish=False)
    await record_event(conn, other_id, "linked", {"with": str(inc["id"])}, publish=True)


async def _offer_volunteers(
    ctx: Context,
    conn: asyncpg.Connection,
    *,
    incident_id: uuid.UUID,
    lat: float,
    lon: float,
    level: int,
    count: int | None = None,
) -> int:
    """Offer the incident to the nearest on-duty volunteers not offered it yet (``count`` of
    them, by default ``volunteers_offered``); returns how many were offered."""
    s = ctx.settings
    radius = s.volunteer_radius_m * s.volunteer_radius_growth**level
    # Redis first: most of the time nobody is near, and then the database is not asked.
    nearby = await presence.nearest(
        ctx.redis,
        s,
        lat=lat,
        lon=lon,
        radius_m=radius,
        count=s.volunteers_offered * 3,
        exclude=set(),
    )
    if not nearby:
        return 0
    assigned = await conn.fetchval(
        "SELECT count(*) FROM assignment WHERE incident_id = $1 AND kind = 'volunteer'", incident_id
    )
    if assigned >= s.volunteers_needed:
        return 0
    offers = await conn.fetch("SELECT volunteer_id FROM offer WHERE incident_id = $1", incident_id)
    offered = {r["volunteer_id"] for r in offers}
    found = [(vid, dist) for vid, dist in nearby if vid not in offered][
        : count or s.volunteers_offered
    ]
    if not found:
        return 0
    await conn.executemany(
        "INSERT INTO offer (id, incident_id, volunteer_id, status, distance_m)"
        " VALUES ($1, $2, $3, 'offered', $4) ON CONFLICT DO NOTHING",
        [(uuid.uuid4(), incident_id, vid, dist) for vid, dist in found],
    )
    await record_event(
        conn,
        incident_id,
        "volunteers_offered",
        {"count": len(found), "radius_m": radius, "level": level},
    )
    return len(found)


def next_step_s(settings: Settings, level: int) -> float | None:
    """Seconds from reaching ``level`` to the next level of an unacknowledged incident's
    ladder (``Settings.escalation_ladder``); None: no further level."""
    ladder = settings.escalation_ladder
    if level <= len(ladder):
        return ladder[level - 1].after_s if level >= 1 else settings.ack_deadline_s
    return settings.escalation_repeat_s or None


def pages_at(settings: Settings, level: int, reason: str) -> bool:
    """Whether reaching ``level`` for ``reason`` pages the on-call supervisors: the ladder's
    steps that say so, its repeats, every stage overdue after the acknowledgement and every
    duress or wrong-PIN escalation."""
    if reason != "ack_timeout":
        return True
    ladder = settings.escalation_ladder
    return level > len(ladder) + 1 or (level >= 2 and ladder[level - 2].page)


async def _escalate(
    conn: asyncpg.Connection, settings: Settings, inc: asyncpg.Record, *, reason: str, bump: bool
) -> int:
    """One step up the ladder: the level, the next deadline while it is unacknowledged, the
    ``escalated`` event (consoles) and, where the ladder says so, a page. Returns the level
    (the caller counts it once its transaction committed)."""
    level = int(inc["escalation_level"]) + (1 if bump else 0)
    await conn.execute(
        "UPDATE incident SET escalation_level = $2::int, updated_at = now(),"
        " ack_deadline_at = CASE WHEN status = 'new' AND $3::float8 IS NOT NULL"
        "   THEN now() + make_interval(secs => $3::float8) ELSE NULL END WHERE id = $1",
        inc["id"],
        level,
        next_step_s(settings, level),
    )
    data: dict[str, Any] = {"level": level, "reason": reason}
    if pages_at(settings, level, reason):
        data["paged"] = await page_on_call(
            conn,
            settings,
            incident_id=inc["id"],
            reason=reason,
            level=level,
            dedupe=f"escalated:{inc['id']}:{level}:{reason}",
        )
    await record_event(conn, inc["id"], "escalated", data, publish=True)
    return level


#: An overdue stage after the acknowledgement, by status (and whether a unit is assigned).
_STAGE_OVERDUE_SQL = """
SELECT i.id, i.escalation_level, CASE
    WHEN i.status = 'responding' THEN 'not_on_scene'
    WHEN EXISTS (SELECT 1 FROM assignment a WHERE a.incident_id = i.id) THEN 'not_responding'
    ELSE 'no_unit_assigned' END AS reason
FROM incident i
WHERE i.stage_deadline_at IS NOT NULL AND i.stage_deadline_at <= now()
  AND i.status IN ('acknowledged', 'responding')
ORDER BY i.stage_deadline_at LIMIT $1 FOR NO KEY UPDATE OF i SKIP LOCKED
"""


async def _route_reported_alone(ctx: Context, entry: Entry) -> bool | None:
    """The fast path for a phone's new report (see ``_ROUTE_REPORTED_SQL``): None when it
    needs the full routing transaction (volunteers near, a report to link, not a phone's);
    otherwise whether the entry was acknowledged with its console message (when nothing
    follows it: no guardians to text, no offers of an earlier delivery to push)."""
    s = ctx.settings
    lat, lon = entry.payload.get("lat"), entry.payload.get("lon")
    if entry.kind != "reported" or entry.payload.get("source") != "app":
        return None
    if entry.volunteers_near:
        return None
    if (
        entry.volunteers_near is None
        and isinstance(lat, float | int)
        and isinstance(lon, float | int)
    ):
        near = await presence.nearest(
            ctx.redis, s, lat=lat, lon=lon, radius_m=s.volunteer_radius_m, count=1, exclude=set()
        )
        if near:
            return None
    row = await ctx.pool.fetchrow(
        _ROUTE_REPORTED_SQL,
        entry.incident_id,
        s.ack_deadline_s,
        ACTOR,
        s.link_window_s,
        s.link_radius_m,
        entry.outbox_id,
        s.notify_deadline_s,
    )
    if row is not None and row["agency_queued"]:
        notification_sender.kick()
    if row is None:
        log.warning("outbox %s: incident %s is gone", entry.outbox_id, entry.incident_id)
        return False
    if row["needs_link"]:
        return None
    # This routing offered nobody; a redelivery pushes what an earlier one may have offered.
    offers = not row["first"]
    last = not offers and not (row["member_id"] is not None and row["has_guardians"])
    if await _publish_to_console(ctx, entry, summary_from_row(row), ack=last):
        return True
    await _notify(ctx, entry, row, offers=offers)
    return False


async def handle(ctx: Context, entry: Entry) -> bool:
    """Route one stream entry; safe to run any number of times for the same entry. True when
    the entry was acknowledged with its last effect (the caller then leaves it)."""
    alone = await _route_reported_alone(ctx, entry)
    if alone is not None:
        return alone
    routed = Routed()
    escalated: int | None = None
    async with ctx.pool.acquire() as conn:
        async with conn.transaction():
            inc = await conn.fetchrow(_RECEIPT_LOCK_SQL, entry.incident_id, entry.outbox_id)
            if inc is None:
                log.warning("outbox %s: incident %s is gone", entry.outbox_id, entry.incident_id)
                return False
            first = bool(inc["first"])
            # Agencies that take the incident get the change (app/interop), once.
            agency_queued = first and await agency_enqueue(
                conn,
                incident_id=entry.incident_id,
                outbox_id=entry.outbox_id,
                kind=entry.kind,
                deadline_s=ctx.settings.notify_deadline_s,
            )
            if first:
                if entry.kind == "reported":
                    routed = await _route_new(ctx, conn, inc)
                elif entry.kind in ESCALATING and inc["status"] not in CLOSED:
                    escalated = await _escalate(
                        conn, ctx.settings, inc, reason=entry.kind, bump=ESCALATING[entry.kind]
                    )
                elif entry.kind == "escalated":
                    if inc["located"] and inc["status"] not in CLOSED:
                        routed.offered = await _offer_volunteers(
                            ctx,
                            conn,
                            incident_id=inc["id"],
                            lat=inc["lat"],
                            lon=inc["lon"],
                            level=int(entry.payload.get("level", 1)),
                        )
                elif entry.kind == "offer_declined":
                    # The next nearest volunteer not offered it yet takes the declined place.
                    if inc["located"] and inc["status"] not in CLOSED:
                        routed.offered = await _offer_volunteers(
                            ctx,
                            conn,
                            incident_id=inc["id"],
                            lat=inc["lat"],
                            lon=inc["lon"],
                            level=inc["escalation_level"],
                            count=1,
                        )
                elif entry.kind in STAGES or entry.kind in CLOSED:
                    if entry.kind == "acknowledged" and entry.committed_at is not None:
                        # The entry's commit is the acknowledgement's; once per outbox id.
                        acked_after = entry.committed_at - inc["received_at"].timestamp()
                        dispatch_metrics.ACK_SECONDS.observe(max(0.0, acked_after))
                    await conn.execute(
                        _STAGE_DEADLINE_SQL,
                        entry.incident_id,
                        ctx.settings.respond_deadline_s,
                        ctx.settings.on_scene_deadline_s,
                    )
                if entry.kind in CLOSED:
                    await conn.execute(
                        "UPDATE offer SET status = 'withdrawn', responded_at = now()"
                        " WHERE incident_id = $1 AND status = 'offered'",
                        entry.incident_id,
                    )
        if escalated is not None:
            dispatch_metrics.count_escalation(escalated, entry.kind)
        if (first and entry.kind in ESCALATING) or agency_queued:
            notification_sender.kick()  # the page or the agencies' deliveries it queued
        if routed.summary is None:
            # After the commit, as every console message carries the current summary.
            routed.summary = await incident_summary(conn, entry.incident_id)
    await _publish_to_console(ctx, entry, routed.summary)
    # A first routing of a new report that offered nobody has nobody to push to (an earlier
    # entry's offers are pushed by that entry's own redelivery); otherwise look them up.
    offers_to_push = not (first and entry.kind == "reported" and routed.offered == 0)
    await _notify(ctx, entry, inc, offers=offers_to_push)
    return False


async def _publish_to_console(
    ctx: Context, entry: Entry, summary: dict[str, Any] | None, *, ack: bool = False
) -> bool:
    """Append the console message. With ``ack`` (it is the entry's last effect) the entry is
    acknowledged with it; returns whether it was."""
    if summary is None:
        return False
    district = uuid.UUID(summary["district_id"]) if summary["district_id"] else None
    ack_id = entry.stream_id if ack else None
    cursor = await console_log.append(
        ctx.redis,
        ctx.settings,
        dedupe_key=console_log.outbox_dedupe_key(entry.outbox_id),
        district_id=district,
        body=console_log.incident_message(entry.kind, entry.payload, summary, entry.committed_at),
        also=[uuid.UUID(d) for d in summary["covered_by"]],
        ack=ack_id,
    )
    if cursor is not None and entry.kind == "reported":
        dispatch_metrics.observe_commit_to_console("dispatcher", entry.committed_at)
    log.info(
        "routed outbox %s (%s) of incident %s",
        entry.outbox_id,
        entry.kind,
        entry.incident_id,
        extra={
            "request_id": entry.payload.get("request_id"),
            "incident_id": str(entry.incident_id),
            "outbox_id": entry.outbox_id,
            "event": entry.kind,
            "console_cursor": cursor,
        },
    )
    return ack_id is not None


async def _notify(ctx: Context, entry: Entry, inc: asyncpg.Record, *, offers: bool) -> None:
    """Queue the pushes and texts this entry calls for (offers to volunteers, guardians' texts
    on the report, acknowledgement, escalation and close), once per event and person, and wake
    this process's sender: they are retried from PostgreSQL until sent or shown as failed."""
    queued = await enqueue_for_event(
        ctx.pool,
        ctx.settings,
        incident_id=entry.incident_id,
        kind=entry.kind,
        payload=entry.payload,
        closed=inc["status"] in CLOSED,
        has_guardians=inc["member_id"] is not None and bool(inc["has_guardians"]),
        offers=offers,
    )
    if queued:
        notification_sender.kick()


async def escalate_overdue(pool: asyncpg.Pool, settings: Settings, *, limit: int = 50) -> int:
    """Escalate incidents nobody acknowledged in time, and those whose stage after the
    acknowledgement is overdue (once per stage); several dispatchers never double up."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, escalation_level FROM incident WHERE status = 'new'"
            " AND ack_deadline_at IS NOT NULL AND ack_deadline_at <= now()"
            " ORDER BY ack_deadline_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
            limit,
        )
        steps = [
            (await _escalate(conn, settings, row, reason="ack_timeout", bump=True), "ack_timeout")
            for row in rows
        ]
        stages = await conn.fetch(_STAGE_OVERDUE_SQL, limit)
        for row in stages:
            await conn.execute(
                "UPDATE incident SET stage_deadline_at = NULL WHERE id = $1", row["id"]
            )
            level = await _escalate(conn, settings, row, reason=row["reason"], bump=True)
            steps.append((level, row["reason"]))
    for level, reason in steps:
        dispatch_metrics.count_escalation(level, reason)
    if rows or stages:
        notification_sender.kick()  # the pages they queued
    return len(rows) + len(stages)


#: The stage deadline once a stage begins (the acknowledgement, responding), from the status
#: the incident has when its entry is routed, so entries routed out of order set the right one.
_STAGE_DEADLINE_SQL = """
UPDATE incident SET stage_deadline_at = CASE status
    WHEN 'acknowledged' THEN nullif(now() + make_interval(secs => $2::float8), now())
    WHEN 'responding' THEN nullif(now() + make_interval(secs => $3::float8), now())
    END
WHERE id = $1
"""
STAGES = ("acknowledged", "responding", "on_scene")
