"""Nearest safe places on true geodesic distance (WGS84 spheroid), and the district at a point.

The GiST index answers K-nearest on ``geography`` with *sphere* distances; the spheroid distance
differs from it by a bounded factor. We fetch a candidate set by sphere distance, re-rank by
spheroid distance, and accept the answer only when it is provably the true top-K:
every place outside the candidates is at least ``max_sphere`` away on the sphere, hence at least
``max_sphere * (1 - SPHERE_ERROR)`` on the spheroid; if the K-th spheroid distance we found is not
above that, nothing outside can beat it. Otherwise the candidate set grows and we ask again.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

#: Upper bound of 1 - spheroid/sphere for any two points on Earth. Along any path the two
#: lengths differ pointwise by the local radius of curvature over the sphere radius R (PostGIS
#: uses the mean radius, 6371008.8 m); the smallest is the meridional radius at the equator,
#: a(1 - e²) = 6335439 m, so spheroid >= 0.99442 * sphere everywhere (docs/geo.md has the proof).
SPHERE_ERROR = 0.006


def first_candidates(limit: int) -> int:
    """How many places the first query fetches for a top-``limit`` answer. Three more than
    asked proves the answer in one statement almost everywhere (the K-th spheroid distance is
    rarely within 0.6% of the (K+3)-th sphere distance), and every candidate costs a spheroid
    distance: 15 candidates for 5 cost 17% more backend CPU per SOS than 8 (measured, seventh
    round in docs/performance.md)."""
    return limit + 3


# Hours are local wall-clock times; closes_at < opens_at spans midnight (22:00-06:00), and equal
# times mean open all day (how "00:00-24:00" arrives once 24:00 is folded to 00:00).
_OPEN_NOW_SQL = """(p.open_24h OR (
    p.opens_at IS NOT NULL AND p.closes_at IS NOT NULL AND CASE
      WHEN p.opens_at = p.closes_at THEN true
      WHEN p.opens_at < p.closes_at THEN lt.t >= p.opens_at AND lt.t < p.closes_at
      ELSE lt.t >= p.opens_at OR lt.t < p.closes_at END))"""


@functools.cache
def _nearest_sql(candidates: int, by_kind: bool, open_only: bool) -> str:
    """The candidate query, one statement text per shape. The candidate count and the filters
    are literals, so the plan PostgreSQL caches for the prepared statement is the KNN index scan
    whatever the point: with them as parameters its generic plan could not know the LIMIT and
    sorted the whole table (30-75 ms), so every call was planned afresh instead (~0.15 ms).
    $1 lat, $2 lon, $3 time zone, $4 the time (NULL: the database clock), $5 the kinds."""
    filters = ["p.active"]
    if by_kind:
        filters.append("p.kind = ANY($5::text[])")
    if open_only:
        filters.append(_OPEN_NOW_SQL)
    return f"""
WITH here AS NOT MATERIALIZED (SELECT ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography AS g),
lt AS NOT MATERIALIZED (SELECT (coalesce($4::timestamptz, now()) AT TIME ZONE $3)::time AS t),
cand AS (
  SELECT p.id, p.name, p.kind, p.phone, p.address, p.is_safety_house, p.geog,
         {_OPEN_NOW_SQL} AS open_now,
         p.geog <-> here.g AS sphere_m
  FROM safe_place p, here, lt
  WHERE {" AND ".join(filters)}
  ORDER BY p.geog <-> here.g
  LIMIT {int(candidates)}
)
SELECT c.id, c.name, c.kind, c.phone, c.address, c.is_safety_house, c.open_now,
       ST_Y(c.geog::geometry) AS lat, ST_X(c.geog::geometry) AS lon,
       ST_Distance(c.geog, here.g, true) AS distance_m,
       max(c.sphere_m) OVER () AS max_sphere_m,
       count(*) OVER () AS n
FROM cand c, here
ORDER BY distance_m, c.id
"""


_DISTRICT_SQL = """
SELECT id, code, name FROM district
WHERE ST_Covers(boundary, ST_SetSRID(ST_MakePoint($2, $1), 4326))
ORDER BY code LIMIT 1
"""


@dataclass(frozen=True)
class NearestPlace:
    id: uuid.UUID
    name: str
    kind: str
    lat: float
    lon: float
    phone: str | None
    address: str | None
    is_safety_house: bool
    open_now: bool
    distance_m: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "kind": self.kind,
            "lat": self.lat,
            "lon": self.lon,
            "distance_m": round(self.distance_m, 1),
            "phone": self.phone,
            "address": self.address,
            "is_safety_house": self.is_safety_house,
            "open_now": self.open_now,
        }


@dataclass(frozen=True)
class DistrictRef:
    id: uuid.UUID
    code: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name}


async def nearest_places(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    lat: float,
    lon: float,
    limit: int = 5,
    kinds: Sequence[str] | None = None,
    open_now: bool = False,
    tz: str = "Asia/Seoul",
    now: datetime | None = None,
) -> list[NearestPlace]:
    """The ``limit`` active places nearest to (lat, lon) by geodesic distance, nearest first.

    ``open_now`` is judged at ``now`` (default: the database clock) in the time zone ``tz``.
    Ties in distance are broken by id, so the answer is deterministic.
    """
    if limit <= 0:
        return []
    candidates = first_candidates(limit)
    args: list[Any] = [lat, lon, tz, now]
    if kinds:
        args.append(list(kinds))
    while True:
        rows = await conn.fetch(_nearest_sql(candidates, bool(kinds), open_now), *args)
        if not rows:
            return []
        exhausted = rows[0]["n"] < candidates
        top = rows[:limit]
        # The proof in the module docstring: the K-th spheroid distance found must not exceed
        # the least spheroid distance any place outside the candidate set could have.
        if exhausted or top[-1]["distance_m"] <= rows[0]["max_sphere_m"] * (1 - SPHERE_ERROR):
            return [_place(r) for r in top]
        candidates *= 4


def _place(r: asyncpg.Record) -> NearestPlace:
    return NearestPlace(
        id=r["id"],
        name=r["name"],
        kind=r["kind"],
        lat=r["lat"],
        lon=r["lon"],
        phone=r["phone"],
        address=r["address"],
        is_safety_house=r["is_safety_house"],
        open_now=r["open_now"],
        distance_m=r["distance_m"],
    )


async def district_at(
    conn: asyncpg.Connection | asyncpg.Pool, *, lat: float, lon: float
) -> DistrictRef | None:
    row = await conn.fetchrow(_DISTRICT_SQL, lat, lon)
    return DistrictRef(row["id"], row["code"], row["name"]) if row else None
