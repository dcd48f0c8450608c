"""What consoles read: incident summaries, lists and details (plain SQL on the asyncpg pool, so a
WebSocket or a dispatcher never holds an ORM session)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import asyncpg

from app.errors import NotFound
from app.homes.console import console_home

SUMMARY_COLUMNS = """
  i.id, i.emergency_id, i.source, i.trigger, i.status, i.silent, i.duress, i.escalation_level,
  ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon, i.accuracy_m,
  i.district_id, d.code AS district_code, d.name AS district_name, i.safe_place_id,
  i.received_at, i.acknowledged_at, i.ack_deadline_at, i.closed_at, i.disposition, i.flags,
  i.covered_by, i.unwatched_at IS NOT NULL AS unwatched, i.stage_deadline_at
"""
_FROM = " FROM incident i LEFT JOIN district d ON d.id = i.district_id "


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary_from_row(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "emergency_id": str(row["emergency_id"] or row["id"]),
        "source": row["source"],
        "trigger": row["trigger"],
        "status": row["status"],
        "silent": row["silent"],
        "duress": row["duress"],
        "escalation_level": row["escalation_level"],
        "lat": row["lat"],
        "lon": row["lon"],
        "accuracy_m": row["accuracy_m"],
        "district_id": str(row["district_id"]) if row["district_id"] else None,
        "district_code": row["district_code"],
        "district_name": row["district_name"],
        "safe_place_id": str(row["safe_place_id"]) if row["safe_place_id"] else None,
        "received_at": _iso(row["received_at"]),
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "ack_deadline_at": _iso(row["ack_deadline_at"]),
        "closed_at": _iso(row["closed_at"]),
        "disposition": row["disposition"],
        "flags": list(row["flags"] or []),
        "coverage": _coverage(row),
        "covered_by": [str(d) for d in row["covered_by"] or ()],
        "unwatched": bool(row["unwatched"]),
        "stage_deadline_at": _iso(row["stage_deadline_at"]),
    }


def _coverage(row: asyncpg.Record) -> str | None:
    """Why the incident may be on a console that is not its district's: it has no district
    (no position, or outside every district), or other districts cover for its own."""
    if row["district_id"] is None:
        return "unlocated" if row["lat"] is None else "outside_city"
    return "covering" if row["covered_by"] else None


def scope_sql(district_ids_param: str) -> str:
    """The incidents a dispatcher of the districts ``district_ids_param`` (an SQL uuid[]) may
    see: their own and those they were given to cover (city-wide staff see all)."""
    return f"(i.district_id = ANY({district_ids_param}) OR i.covered_by && {district_ids_param})"


async def incident_summary(
    conn: asyncpg.Pool | asyncpg.Connection, incident_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {SUMMARY_COLUMNS}{_FROM} WHERE i.id = $1", incident_id)
    return summary_from_row(row) if row is not None else None


def in_scope(
    *,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
    district_id: uuid.UUID | str | None,
    covered_by: Iterable[uuid.UUID | str] = (),
) -> bool:
    """Whether a dispatcher sees an incident of ``district_id`` that the districts
    ``covered_by`` cover: city-wide staff see all; others their districts' incidents (not
    unlocated ones) and those they were given because nobody watched their own channel
    (app/dispatch/coverage.py). ``scope_sql`` is the same rule in SQL."""
    if city_wide:
        return True
    ids = {uuid.UUID(str(d)) for d in (district_id, *covered_by) if d is not None}
    return not ids.isdisjoint(district_ids)


#: ``list_incidents(order=...)``. ``urgent``, for a console's snapshot in a flood (where the limit
#: cuts): a duress first, then by escalation level, then the silent ones, then the unacknowledged
#: ``new`` ones oldest first (the most overdue), then the rest newest first.
_ORDER_SQL = {
    "newest": "i.received_at DESC",
    "urgent": "i.duress DESC, i.escalation_level DESC, i.silent DESC, (i.status = 'new') DESC,"
    " CASE WHEN i.status = 'new' THEN i.received_at END ASC, i.received_at DESC",
}


async def list_incidents(
    pool: asyncpg.Pool,
    *,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
    status: str = "open",
    district_id: uuid.UUID | None = None,
    source: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    order: Literal["newest", "urgent"] = "newest",
) -> list[dict[str, Any]]:
    """Incidents in the caller's scope, newest first (or the most urgent first: see
    ``_ORDER_SQL``)."""
    args: list[Any] = []
    where = ["true"]
    if status == "open":
        where.append("i.closed_at IS NULL")
    elif status == "closed":
        where.append("i.closed_at IS NOT NULL")
    elif status != "all":
        args.append(status)
        where.append(f"i.status = ${len(args)}")
    if district_id is not None:
        args.append(district_id)
        where.append(f"i.district_id = ${len(args)}")
    if source is not None:
        args.append(source)
        where.append(f"i.source = ${len(args)}")
    if since is not None:
        args.append(since)
        where.append(f"i.received_at >= ${len(args)}")
    if not city_wide:
        args.append(list(district_ids))
        where.append(scope_sql(f"${len(args)}::uuid[]"))
    args.append(limit)
    rows = await pool.fetch(
        f"SELECT {SUMMARY_COLUMNS}{_FROM} WHERE {' AND '.join(where)}"
        f" ORDER BY {_ORDER_SQL[order]}, i.id LIMIT ${len(args)}",
        *args,
    )
    return [summary_from_row(r) for r in rows]


async def log_location_access(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    staff_id: uuid.UUID,
    incident_ids: list[uuid.UUID],
    reason: str,
) -> None:
    """Promise 6: every staff read of a woman's location is logged (one row per incident)."""
    await log_location_reads(
        pool, staff_ids=[staff_id] * len(incident_ids), incident_ids=incident_ids, reason=reason
    )


async def log_location_reads(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    staff_ids: list[uuid.UUID],
    incident_ids: list[uuid.UUID],
    reason: str,
) -> None:
    """Several staff members' reads in one statement (``staff_ids[i]`` read ``incident_ids[i]``):
    one row per incident, its readers in ``staff_ids`` (each once, sorted)."""
    if not incident_ids:
        return
    await pool.execute(
        "INSERT INTO location_access (incident_id, staff_ids, reason)"
        " SELECT i, array_agg(DISTINCT s ORDER BY s), $3"
        " FROM unnest($1::uuid[], $2::uuid[]) AS t(s, i) GROUP BY i",
        staff_ids,
        incident_ids,
        reason,
    )


#: How a linked incident the dispatcher may not see is shown (see ``linked_summary``).
OTHER_DISTRICT = "another district's incident"


def linked_summary(
    summary: dict[str, Any], *, city_wide: bool, district_ids: frozenset[uuid.UUID]
) -> dict[str, Any]:
    """A linked report (one emergency, e.g. a phone SOS 300 m from a button press across a
    district boundary) as a dispatcher may see it: whole when it is in their scope, else only
    that it exists, its source and status and the district that handles it; no position, no
    person, nothing its own district's dispatchers have not chosen to share."""
    if in_scope(
        city_wide=city_wide,
        district_ids=district_ids,
        district_id=summary["district_id"],
        covered_by=summary["covered_by"],
    ):
        return summary
    return {
        "id": summary["id"],
        "linked": OTHER_DISTRICT,
        "source": summary["source"],
        "status": summary["status"],
        "district_name": summary["district_name"],
    }


async def incident_detail(
    pool: asyncpg.Pool,
    *,
    incident_id: uuid.UUID,
    staff_id: uuid.UUID,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
) -> dict[str, Any]:
    """One incident with timeline, location trail, offers, assignments and linked reports
    (those out of the dispatcher's scope without position: ``linked_summary``). Every position
    shown is logged in ``location_access``."""
    async with pool.acquire() as conn, conn.transaction():
        summary = await incident_summary(conn, incident_id)
        if summary is None or not in_scope(
            city_wide=city_wide,
            district_ids=district_ids,
            district_id=summary["district_id"],
            covered_by=summary["covered_by"],
        ):
            raise NotFound(f"incident {incident_id} not found")
        events = await conn.fetch(
            "SELECT id, kind, at, actor, data FROM incident_event WHERE incident_id = $1"
            " ORDER BY at, id",
            incident_id,
        )
        trail = await conn.fetch(_TRAIL_SQL, incident_id)
        offers = await conn.fetch(
            "SELECT o.id, o.volunteer_id, s.name, s.badge_number, o.status, o.distance_m,"
            " o.offered_at, o.responded_at FROM offer o JOIN staff s ON s.id = o.volunteer_id"
            " WHERE o.incident_id = $1 ORDER BY o.offered_at",
            incident_id,
        )
        assignments = await conn.fetch(
            "SELECT a.id, a.kind, a.unit, a.volunteer_id, s.name, s.badge_number, a.created_at"
            " FROM assignment a LEFT JOIN staff s ON s.id = a.volunteer_id"
            " WHERE a.incident_id = $1 ORDER BY a.created_at",
            incident_id,
        )
        linked_rows = await conn.fetch(
            f"SELECT {SUMMARY_COLUMNS}{_FROM} WHERE i.emergency_id = $1 AND i.id <> $2"
            " ORDER BY i.received_at, i.id",
            uuid.UUID(summary["emergency_id"]),
            incident_id,
        )
        linked = [
            linked_summary(summary_from_row(r), city_wide=city_wide, district_ids=district_ids)
            for r in linked_rows
        ]
        for other in linked:
            # One emergency: a linked report's trail (her phone's SOS beside her home's
            # alarm) is shown with it, when the dispatcher may see that report.
            if "linked" not in other:
                other["trail"] = _trail_json(await conn.fetch(_TRAIL_SQL, uuid.UUID(other["id"])))
        home = (
            await console_home(conn, incident_id=incident_id)
            if summary["source"] == "sensor"
            else None
        )
        shown = [incident_id] if summary["lat"] is not None else []
        shown += [uuid.UUID(x["id"]) for x in linked if x.get("lat") is not None]
        await log_location_access(
            conn, staff_id=staff_id, incident_ids=shown, reason="console_detail"
        )
    return {
        **summary,
        "timeline": [
            {
                "id": e["id"],
                "kind": e["kind"],
                "at": _iso(e["at"]),
                "actor": e["actor"],
                "data": e["data"],
            }
            for e in events
        ],
        "trail": _trail_json(trail),
        "offers": [
            {
                "id": str(o["id"]),
                "volunteer_id": str(o["volunteer_id"]),
                "name": o["name"],
                "badge_number": o["badge_number"],
                "status": o["status"],
                "distance_m": o["distance_m"],
                "offered_at": _iso(o["offered_at"]),
                "responded_at": _iso(o["responded_at"]),
            }
            for o in offers
        ],
        "assignments": [
            {
                "id": str(a["id"]),
                "kind": a["kind"],
                "unit": a["unit"],
                "volunteer_id": str(a["volunteer_id"]) if a["volunteer_id"] else None,
                "name": a["name"],
                "badge_number": a["badge_number"],
                "created_at": _iso(a["created_at"]),
            }
            for a in assignments
        ],
        "linked": linked,
        # A home sensor's incident: her home, the sensor that fired, 24 h of arming history.
        "home": home,
    }


_TRAIL_SQL = (
    "SELECT ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, accuracy_m,"
    " captured_at, received_at FROM location_point WHERE incident_id = $1 ORDER BY id"
)


def _trail_json(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [
        {
            "lat": p["lat"],
            "lon": p["lon"],
            "accuracy_m": p["accuracy_m"],
            "captured_at": _iso(p["captured_at"]),
            "received_at": _iso(p["received_at"]),
        }
        for p in rows
    ]
