"""The cameras and emergency bells within a radius of a point, nearest first, by geodesic
distance on the WGS84 spheroid.

One statement: ``ST_DWithin`` on ``geography`` (the GiST index finds the candidates, PostGIS then
checks each on the spheroid), ``ST_Distance(…, true)`` orders them, and a window per kind keeps
the ``limit`` nearest of each while counting all within the radius. The radius bounds the work
(the console caps it), so every site within it is measured: the order is exact, with no
candidate set to grow as for the nearest safe places (app/geo/nearest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.models.asset import AssetKind

_NEAR_SQL = """
WITH pt AS (SELECT ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography AS g),
near AS (
  SELECT a.id, a.kind, a.name, a.address, a.office, a.phone, a.cameras, a.direction, a.purpose,
         ST_Y(a.geog::geometry) AS lat, ST_X(a.geog::geometry) AS lon,
         ST_Distance(a.geog, pt.g, true) AS distance_m
  FROM public_asset a, pt
  WHERE a.active AND ST_DWithin(a.geog, pt.g, $3, true)
), ranked AS (
  SELECT near.*, row_number() OVER (PARTITION BY kind ORDER BY distance_m, id) AS n,
         count(*) OVER (PARTITION BY kind) AS within
  FROM near
)
SELECT * FROM ranked WHERE n <= $4 ORDER BY kind, n
"""


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str
    name: str | None
    address: str | None
    office: str | None
    phone: str | None
    cameras: int | None
    direction: str | None
    purpose: str | None
    lat: float
    lon: float
    distance_m: float

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "distance_m": round(self.distance_m, 1)}


@dataclass
class Nearby:
    cameras: list[Asset] = field(default_factory=list)
    bells: list[Asset] = field(default_factory=list)
    #: How many of each kind are within the radius (the lists stop at the limit).
    cameras_within: int = 0
    bells_within: int = 0


async def assets_near(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    lat: float,
    lon: float,
    radius_m: float,
    limit: int,
) -> Nearby:
    """The ``limit`` nearest active cameras and bells within ``radius_m`` metres of the point,
    each list ordered by geodesic distance (ties by id)."""
    rows = await conn.fetch(_NEAR_SQL, lat, lon, radius_m, limit)
    found = Nearby()
    for r in rows:
        asset = Asset(
            id=str(r["id"]),
            kind=r["kind"],
            name=r["name"],
            address=r["address"],
            office=r["office"],
            phone=r["phone"],
            cameras=r["cameras"],
            direction=r["direction"],
            purpose=r["purpose"],
            lat=r["lat"],
            lon=r["lon"],
            distance_m=r["distance_m"],
        )
        if asset.kind == AssetKind.cctv:
            found.cameras.append(asset)
            found.cameras_within = r["within"]
        else:
            found.bells.append(asset)
            found.bells_within = r["within"]
    return found
