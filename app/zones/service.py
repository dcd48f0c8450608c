"""Special control zones: polygons the police watch more closely (a station's hot spot, a park
at night), with daily active hours in the city's time zone and a priority raise for the
incidents reported inside them while they are active.

An incident's zone is derived when it is read (``zones_of_incidents``), from its position and the
moment it was received, never written by the SOS statement: the intake stays one statement
with no extra lookup (docs/control-room.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

import asyncpg

from app.errors import BadRequest, NotFound
from app.geo.importers import ImportFailed, RowProblem, _parse_hours, _polygon_problem

MAX_PRIORITY_RAISE = 3
MAX_NAME = 200
MAX_REASON = 1000


class ZoneImportRejected(BadRequest):
    """A zones file with bad features: nothing was imported."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        first = "; ".join(f"feature {p.row}: {p.reason}" for p in problems[:50])
        super().__init__(f"{len(problems)} bad feature(s), nothing imported: {first}")
        self.problems = list(problems)


@dataclass(frozen=True)
class ZoneRecord:
    name: str
    reason: str
    geojson: str
    active_from: time | None = None
    active_to: time | None = None
    priority_raise: int = 1
    #: 1-based feature number in an imported file (0 for one zone from the API).
    row: int = 0


def active_sql(zone: str, at: str, tz: str) -> str:
    """SQL: whether the zone ``zone`` (an alias) is active at the timestamptz ``at`` in the
    time zone ``tz`` (an SQL text). Daily hours; ``active_to < active_from`` spans midnight."""
    t = f"(({at}) AT TIME ZONE {tz})::time"
    return (
        f"({zone}.active_from IS NULL OR CASE"
        f" WHEN {zone}.active_from < {zone}.active_to"
        f" THEN {t} >= {zone}.active_from AND {t} < {zone}.active_to"
        f" ELSE {t} >= {zone}.active_from OR {t} < {zone}.active_to END)"
    )


_COLUMNS = """z.id, z.name, z.reason, z.active_from, z.active_to, z.priority_raise, z.source,
  z.created_at, ST_AsGeoJSON(z.boundary, 6) AS geometry"""

_CHECK_SQL = """
SELECT r.i, ST_IsValid(g) AS valid, ST_IsValidReason(g) AS reason, ST_AsEWKB(ST_Multi(g)) AS ewkb
FROM unnest($1::int[], $2::text[]) AS r(i, gj),
     LATERAL (SELECT ST_SetSRID(ST_Force2D(ST_GeomFromGeoJSON(r.gj)), 4326) AS g) AS geo
"""

_INSERT_SQL = f"""
INSERT INTO special_zone AS z (id, name, reason, boundary, active_from, active_to,
                               priority_raise, source)
SELECT gen_random_uuid(), r.name, r.reason, ST_GeomFromEWKB(r.ewkb), r.af, r.at, r.pr, $7
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::time[], $5::time[], $6::int[])
     AS r(name, reason, ewkb, af, at, pr)
RETURNING {_COLUMNS}
"""


def _record(n: int, feature: Any) -> ZoneRecord | str:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return "not a GeoJSON Feature"
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    name = str(props.get("name") or "").strip()
    reason = str(props.get("reason") or "").strip()
    if not name:
        return "property 'name' is missing"
    if len(name) > MAX_NAME:
        return f"name is longer than {MAX_NAME} characters"
    if not reason:
        return "property 'reason' is missing"
    if len(reason) > MAX_REASON:
        return f"reason is longer than {MAX_REASON} characters"
    hours = props.get("active_hours")
    active_from = active_to = None
    if hours not in (None, ""):
        parsed = _parse_hours(str(hours))
        if isinstance(parsed, str):
            return parsed.replace("opening hours", "active_hours")
        _always, active_from, active_to = parsed
    raise_ = props.get("priority_raise", 1)
    if (
        not isinstance(raise_, int)
        or isinstance(raise_, bool)
        or not 0 <= raise_ <= MAX_PRIORITY_RAISE
    ):
        return f"priority_raise must be an integer from 0 to {MAX_PRIORITY_RAISE}"
    problem = _polygon_problem(feature.get("geometry"))
    if problem:
        return problem
    return ZoneRecord(
        name=name,
        reason=reason,
        geojson=json.dumps(feature["geometry"]),
        active_from=active_from,
        active_to=active_to,
        priority_raise=raise_,
        row=n,
    )


def read_zones(doc: Any) -> tuple[list[ZoneRecord], list[RowProblem]]:
    """The zones of a GeoJSON FeatureCollection (already parsed), and each bad feature by its
    1-based number. Properties: ``name``, ``reason``, ``active_hours`` ("22:00-06:00"; absent
    or "24h" for all day), ``priority_raise`` (0-3, default 1)."""
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = {"type": "FeatureCollection", "features": [doc]}
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ImportFailed("not a GeoJSON FeatureCollection or Feature")
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise ImportFailed("the FeatureCollection has no features")
    records: list[ZoneRecord] = []
    problems: list[RowProblem] = []
    for n, feature in enumerate(features, start=1):
        result = _record(n, feature)
        if isinstance(result, str):
            problems.append(RowProblem(n, result))
        else:
            records.append(result)
    return records, problems


def zone_json(row: asyncpg.Record, *, active_now: bool | None = None) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "name": row["name"],
        "reason": row["reason"],
        "active_hours": _hours(row["active_from"], row["active_to"]),
        "priority_raise": row["priority_raise"],
        "source": row["source"],
        "created_at": row["created_at"].isoformat(),
        "geometry": json.loads(row["geometry"]),
    }
    if active_now is not None:
        out["active_now"] = active_now
    return out


def _hours(active_from: time | None, active_to: time | None) -> str | None:
    if active_from is None or active_to is None:
        return None
    return f"{active_from:%H:%M}-{active_to:%H:%M}"


async def insert_zones(
    conn: asyncpg.Connection, records: Sequence[ZoneRecord], *, source: str
) -> list[dict[str, Any]]:
    """All of ``records`` or none: a polygon PostGIS finds invalid (self-intersecting, ...)
    rejects the whole batch, each bad one named by its feature number."""
    async with conn.transaction():
        checked = await conn.fetch(
            _CHECK_SQL, [r.row for r in records], [r.geojson for r in records]
        )
        bad = [
            RowProblem(c["i"], f"invalid polygon: {c['reason']}") for c in checked if not c["valid"]
        ]
        if bad:
            raise ZoneImportRejected(bad)
        ewkb = {c["i"]: c["ewkb"] for c in checked}
        rows = await conn.fetch(
            _INSERT_SQL,
            [r.name for r in records],
            [r.reason for r in records],
            [ewkb[r.row] for r in records],
            [r.active_from for r in records],
            [r.active_to for r in records],
            [r.priority_raise for r in records],
            source,
        )
    return [zone_json(r) for r in rows]


async def import_zones(
    pool: asyncpg.Pool | asyncpg.Connection, doc: Any, *, source: str
) -> list[dict[str, Any]]:
    """Import a GeoJSON document all-or-nothing (``ZoneImportRejected`` lists the bad
    features; ``ImportFailed`` when it is no FeatureCollection at all)."""
    records, problems = read_zones(doc)
    if problems:
        raise ZoneImportRejected(problems)
    if isinstance(pool, asyncpg.Connection):
        return await insert_zones(pool, records, source=source)
    async with pool.acquire() as conn:
        return await insert_zones(conn, records, source=source)


async def list_zones(pool: asyncpg.Pool, *, tz: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS}, {active_sql('z', 'now()', '$1')} AS active_now"
        " FROM special_zone z WHERE z.active ORDER BY z.name, z.id",
        tz,
    )
    return [zone_json(r, active_now=r["active_now"]) for r in rows]


async def delete_zone(pool: asyncpg.Pool, zone_id: uuid.UUID) -> None:
    status = await pool.execute("DELETE FROM special_zone WHERE id = $1", zone_id)
    if status.endswith(" 0"):
        raise NotFound(f"zone {zone_id} not found")


_OF_INCIDENTS_SQL = f"""
SELECT i.id AS incident_id, i.district_id, i.covered_by, z.id, z.name, z.reason,
       z.priority_raise, {active_sql("z", "i.received_at", "$2")} AS active_at_report
FROM incident i
JOIN LATERAL (
  SELECT z.* FROM special_zone z
  WHERE z.active AND i.location IS NOT NULL AND ST_Covers(z.boundary, i.location::geometry)
  -- The zone that raises it most while active, then the one whose hours include the report.
  ORDER BY ({active_sql("z", "i.received_at", "$2")}) DESC, z.priority_raise DESC, z.name, z.id
  LIMIT 1
) z ON true
WHERE i.id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class IncidentZone:
    incident_id: uuid.UUID
    district_id: uuid.UUID | None
    covered_by: list[uuid.UUID]
    zone_id: uuid.UUID
    name: str
    reason: str
    #: Active at the moment the incident was received (Asia/Seoul hours).
    active_at_report: bool
    #: What the zone adds to the incident's priority: its raise while active, else 0.
    priority_raise: int


async def zones_of_incidents(
    pool: asyncpg.Pool | asyncpg.Connection, incident_ids: Sequence[uuid.UUID], *, tz: str
) -> list[IncidentZone]:
    """The zone each of ``incident_ids`` lies in (those inside none are left out)."""
    if not incident_ids:
        return []
    rows = await pool.fetch(_OF_INCIDENTS_SQL, list(incident_ids), tz)
    return [
        IncidentZone(
            incident_id=r["incident_id"],
            district_id=r["district_id"],
            covered_by=list(r["covered_by"] or ()),
            zone_id=r["id"],
            name=r["name"],
            reason=r["reason"],
            active_at_report=r["active_at_report"],
            priority_raise=r["priority_raise"] if r["active_at_report"] else 0,
        )
        for r in rows
    ]
