"""What the console and phone-simulator maps draw: our own districts and places, Seoul's dongs for
orientation (tiles only when a tile server is configured: by default the pages work offline),
and what is around one incident."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import uuid
from functools import lru_cache
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api import answers
from app.api.deps import AnyClient, CurrentDispatcher, PoolDep, RedisDep, SettingsDep
from app.dispatch import presence
from app.errors import BadRequest, NotFound
from app.geo.nearest import nearest_places
from app.geo.shipped import SEOUL_DONGS
from app.incidents.console_service import log_location_access
from app.models.geo import POLICE_KINDS, PlaceKind

router = APIRouter(tags=["maps"])

#: Enough for every Safety House and police office of Seoul; a city with more passes a bbox.
MAX_PLACES = 5000
#: Boundaries are simplified to about 5 m: plenty for a console map, a fraction of the bytes.
SIMPLIFY_DEG = 0.00005
SAFE_KINDS = [k.value for k in PlaceKind if k not in POLICE_KINDS]
POLICE = [k.value for k in POLICE_KINDS]
VOLUNTEER_SEARCH_M = 3000.0

_DISTRICTS_SQL = """
SELECT id, code, name,
       ST_AsGeoJSON(ST_Multi(ST_SimplifyPreserveTopology(boundary, $1)), 6) AS geometry
FROM district ORDER BY code
"""

_PLACES_SQL = """
SELECT id, name, kind, is_safety_house, open_24h, phone, address,
       ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon
FROM safe_place
WHERE active AND ($1::float8 IS NULL
      OR ST_Intersects(geog::geometry, ST_MakeEnvelope($1, $2, $3, $4, 4326)))
ORDER BY kind, name, id
LIMIT $5
"""


def _parse_bbox(bbox: str | None) -> tuple[float | None, ...]:
    if bbox is None:
        return (None, None, None, None)
    try:
        lon0, lat0, lon1, lat1 = (float(v) for v in bbox.split(","))
    except ValueError:
        raise BadRequest("bbox must be lon0,lat0,lon1,lat1") from None
    if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
        raise BadRequest("bbox must be lon0,lat0,lon1,lat1 with lon0 < lon1 and lat0 < lat1")
    return (lon0, lat0, lon1, lat1)


@router.get(
    "/v1/map/reference",
    summary="Districts (GeoJSON) and safe places / police offices for a map",
    responses={
        200: {"model": answers.MapReference, "description": "built by hand (see the test)"},
        401: {"description": "no valid token"},
        400: {"description": "bad bbox"},
    },
)
async def reference(
    _client: AnyClient,
    pool: PoolDep,
    bbox: str | None = Query(None, description="lon0,lat0,lon1,lat1: only places inside"),
) -> Response:
    """Public reference data only (no incidents): any member or staff token may read it."""
    box = _parse_bbox(bbox)
    districts, places = await asyncio.gather(
        pool.fetch(_DISTRICTS_SQL, SIMPLIFY_DEG),
        pool.fetch(_PLACES_SQL, *box, MAX_PLACES + 1),
    )
    body = {
        "districts": {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": str(d["id"]),
                    "properties": {"id": str(d["id"]), "code": d["code"], "name": d["name"]},
                    # Already JSON from PostGIS: embedded as is, never parsed here.
                    "geometry": orjson.Fragment(d["geometry"]),
                }
                for d in districts
            ],
        },
        "places": [
            {
                "id": str(p["id"]),
                "name": p["name"],
                "kind": p["kind"],
                "police": p["kind"] in POLICE,
                "is_safety_house": p["is_safety_house"],
                "open_24h": p["open_24h"],
                "phone": p["phone"],
                "address": p["address"],
                "lat": p["lat"],
                "lon": p["lon"],
            }
            for p in places[:MAX_PLACES]
        ],
        "truncated": len(places) > MAX_PLACES,
    }
    return Response(orjson.dumps(body), media_type="application/json")


@lru_cache(maxsize=1)
def _dongs_file() -> tuple[bytes, bytes, str]:
    """The shipped file as read once per process: (bytes, gzipped, ETag)."""
    body = SEOUL_DONGS.read_bytes()
    return body, gzip.compress(body, 9, mtime=0), f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@router.get(
    "/v1/map/dongs",
    summary="Seoul's dong boundaries (GeoJSON), drawn faintly for orientation",
    response_class=Response,
    responses={
        200: {"content": {"application/geo+json": {}}, "description": "a FeatureCollection"},
        304: {"description": "unchanged since the ETag sent in If-None-Match"},
        404: {"description": "the dong layer is off (ANSIM_MAP_DONGS=false)"},
    },
)
async def dongs(request: Request, settings: SettingsDep) -> Response:
    """Public reference data (open data, no incidents, no people), the same for everyone: the
    467 legal dongs shipped in app/geo/data/seoul/ (properties ``EMD_CD``, ``EMD_KOR_NM``,
    ``EMD_ENG_NM``, ``SIG_CD``). Cached by browsers and proxies for a day; revalidated by ETag."""
    if not settings.map_dongs:
        raise NotFound("the dong layer is off (ANSIM_MAP_DONGS=false)")
    body, zipped, etag = _dongs_file()
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=86400",
        "Vary": "Accept-Encoding",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = zipped
    return Response(body, media_type="application/geo+json", headers=headers)


async def _volunteers(pool: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    if not ids:
        return {}
    rows = await pool.fetch(
        "SELECT id, name, badge_number FROM staff"
        " WHERE id = ANY($1::uuid[]) AND role = 'volunteer' AND active",
        ids,
    )
    return {r["id"]: r for r in rows}


async def _positions(
    redis: Any, settings: Any, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[float, float]]:
    if not ids:
        return {}
    raw: Any = await redis.geopos(settings.volunteer_geo_key, *(str(i) for i in ids))
    return {i: (float(p[1]), float(p[0])) for i, p in zip(ids, raw, strict=True) if p is not None}


@router.get(
    "/v1/console/incidents/{incident_id}/nearby",
    summary="Around one incident: open safe places, police offices, volunteers",
    tags=["console"],
    responses={404: {"description": "no such incident in the dispatcher's scope"}},
    response_model=answers.NearbyOut,
)
async def incident_nearby(
    incident_id: uuid.UUID,
    staff: CurrentDispatcher,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """The nearest places open now, the nearest police offices, the volunteers assigned (with
    their last position) and on-duty volunteers nearby who could be assigned."""
    row = await pool.fetchrow(
        "SELECT district_id, covered_by, ST_Y(location::geometry) AS lat,"
        " ST_X(location::geometry) AS lon FROM incident WHERE id = $1",
        incident_id,
    )
    if row is None or not staff.sees(row["district_id"], row["covered_by"]):
        raise NotFound(f"incident {incident_id} not found")
    assigned_ids: list[uuid.UUID] = [
        r["volunteer_id"]
        for r in await pool.fetch(
            "SELECT DISTINCT volunteer_id FROM assignment"
            " WHERE incident_id = $1 AND kind = 'volunteer' AND volunteer_id IS NOT NULL",
            incident_id,
        )
    ]
    lat, lon = row["lat"], row["lon"]
    places: list[dict[str, Any]] = []
    police: list[dict[str, Any]] = []
    near: list[tuple[uuid.UUID, float]] = []
    if lat is not None and lon is not None:
        safe_found, police_found, near = await asyncio.gather(
            nearest_places(
                pool,
                lat=lat,
                lon=lon,
                limit=5,
                kinds=SAFE_KINDS,
                open_now=True,
                tz=settings.local_timezone,
            ),
            nearest_places(pool, lat=lat, lon=lon, limit=3, kinds=POLICE),
            presence.nearest(
                redis,
                settings,
                lat=lat,
                lon=lon,
                radius_m=VOLUNTEER_SEARCH_M,
                count=10,
                exclude=set(assigned_ids),
            ),
        )
        places = [p.as_json() for p in safe_found]
        police = [p.as_json() for p in police_found]
        await log_location_access(
            pool, staff_id=staff.id, incident_ids=[incident_id], reason="console_nearby"
        )
    every = assigned_ids + [vid for vid, _ in near]
    people, positions = await asyncio.gather(
        _volunteers(pool, every), _positions(redis, settings, every)
    )
    distance = dict(near)
    volunteers = []
    for vid in every:
        person = people.get(vid)
        if person is None:
            continue
        where = positions.get(vid)
        volunteers.append(
            {
                "id": str(vid),
                "name": person["name"],
                "badge_number": person["badge_number"],
                "assigned": vid in assigned_ids,
                "distance_m": round(distance[vid], 1) if vid in distance else None,
                "lat": where[0] if where else None,
                "lon": where[1] if where else None,
            }
        )
    return {
        "incident_id": str(incident_id),
        "safe_places": places,
        "police": police,
        "volunteers": volunteers,
    }
