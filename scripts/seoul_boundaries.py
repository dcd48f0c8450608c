"""Rebuild app/geo/data/seoul/ from southkorea/seoul-maps (Apache-2.0) in ../shared/data/seoul.

    .venv/bin/python scripts/seoul_boundaries.py [--database-url URL]

PostGIS does the work (any database with the extension; nothing is written to it: temporary
tables only). Each layer is simplified as a *coverage*, so neighbours keep one shared border:
the polygons' borders are noded into one set of edges, each edge is simplified once with
ST_SimplifyPreserveTopology and snapped to a grid, the edges are polygonized again and every
face goes to the source polygon it overlaps most. Simplifying each polygon alone would leave
gaps and overlaps along every border (0.22 km² of gaps for the districts at the same
tolerance), and a point in a gap would have no district. Tolerances and the figures it prints
are recorded in app/geo/data/seoul/README.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.paths import SEOUL  # noqa: E402

OUT = ROOT / "app" / "geo" / "data" / "seoul"
UPSTREAM = "southkorea/seoul-maps@dbb1dcde2e3c9937684c5a44ab9301888ad63ee6"

#: (output, source file, its path upstream, code property, tolerance and grid in degrees,
#: properties kept). 0.0001° is about 11 m north-south and 9 m east-west at 37.5°N.
LAYERS = [
    (
        "districts.geojson",
        "seoul_gu_boundaries_juso2015.geojson",
        "juso/2015/json/seoul_municipalities_geo.json",
        "SIG_CD",
        0.0001,
        0.00001,
        ["SIG_CD", "SIG_KOR_NM", "SIG_ENG_NM"],
    ),
    (
        "dongs.geojson",
        "seoul_legal_dong_boundaries_juso2015_simplified.geojson",
        "juso/2015/json/seoul_neighborhoods_geo_simple.json",
        "EMD_CD",
        0.0003,
        0.0001,
        ["EMD_CD", "EMD_KOR_NM", "EMD_ENG_NM"],
    ),
]

_LOAD = """
CREATE TEMP TABLE src ON COMMIT DROP AS
SELECT r.code, ST_MakeValid(ST_SetSRID(ST_Force2D(ST_GeomFromGeoJSON(r.gj)), 4326)) AS g
FROM unnest($1::text[], $2::text[]) AS r(code, gj)
"""

_COVERAGE = """
WITH lines AS (SELECT ST_Union(ST_Boundary(g)) AS g FROM src),
edges AS (SELECT (ST_Dump(ST_LineMerge(g))).geom AS e FROM lines),
simple AS (SELECT ST_SnapToGrid(ST_SimplifyPreserveTopology(e, $1), $2) AS e FROM edges),
noded AS (SELECT ST_Union(e) AS g FROM simple),
faces AS (SELECT (ST_Dump(ST_Polygonize(g))).geom AS f FROM noded),
owned AS (
  SELECT f, (SELECT code FROM src WHERE src.g && f
             ORDER BY ST_Area(ST_Intersection(src.g, f)) DESC, code LIMIT 1) AS code
  FROM faces
)
SELECT code, ST_AsGeoJSON(ST_Multi(ST_ReducePrecision(ST_Union(f), $2)), $3) AS gj,
       ST_NPoints(ST_Union(f)) AS points, ST_IsValid(ST_ReducePrecision(ST_Union(f), $2)) AS valid
FROM owned WHERE code IS NOT NULL GROUP BY code ORDER BY code
"""

#: How far the simplified layer is from the source: overlaps between neighbours, holes in the
#: city (gaps), the largest change of one polygon's area, and at seeded random points inside
#: the city the share that fall in another polygon than in the source.
_CHECK = """
WITH out AS (
  SELECT r.code, ST_SetSRID(ST_GeomFromGeoJSON(r.gj), 4326) AS g
  FROM unnest($1::text[], $2::text[]) AS r(code, gj)
), city AS (SELECT ST_Union(g) AS g FROM src),
pts AS (
  SELECT (ST_Dump(ST_GeneratePoints(g, 20000, 20141001))).geom AS p FROM city
)
SELECT
  (SELECT sum(ST_Area(g::geography)) FROM out)
    - (SELECT ST_Area(ST_Union(g)::geography) FROM out) AS overlap_m2,
  (SELECT sum(ST_NumInteriorRings(d.geom)) FROM ST_Dump((SELECT ST_Union(g) FROM out)) AS d)
    AS holes,
  (SELECT sum(ST_NumInteriorRings(d.geom)) FROM city, ST_Dump(city.g) AS d) AS source_holes,
  (SELECT max(abs(ST_Area(o.g::geography) / ST_Area(s.g::geography) - 1))
   FROM out o JOIN src s USING (code)) AS max_area_change,
  (SELECT count(*) FROM pts) AS points,
  (SELECT count(*) FROM pts WHERE
     (SELECT min(code) FROM src WHERE ST_Covers(src.g, p))
     IS DISTINCT FROM (SELECT min(code) FROM out WHERE ST_Covers(out.g, p))) AS moved
"""


async def build(conn: asyncpg.Connection, layer: tuple) -> dict[str, object]:  # type: ignore[type-arg]
    out_name, src_name, upstream_path, code_key, tolerance, grid, keep = layer
    source = json.loads((SEOUL / src_name).read_text(encoding="utf-8"))
    props = {f["properties"][code_key]: f["properties"] for f in source["features"]}
    decimals = len(f"{grid:.10f}".rstrip("0").split(".")[1])
    async with conn.transaction():
        await conn.execute(
            _LOAD,
            [f["properties"][code_key] for f in source["features"]],
            [json.dumps(f["geometry"]) for f in source["features"]],
        )
        rows = await conn.fetch(_COVERAGE, tolerance, grid, decimals)
        assert all(r["valid"] for r in rows), "a simplified polygon is invalid"
        check = await conn.fetchrow(_CHECK, [r["code"] for r in rows], [r["gj"] for r in rows])
    features = []
    for r in rows:
        p = {k: props[r["code"]][k] for k in keep}
        if code_key == "EMD_CD":  # the legal-dong code starts with its district's SIG_CD
            p["SIG_CD"] = r["code"][:5]
        features.append({"type": "Feature", "properties": p, "geometry": json.loads(r["gj"])})
    doc = {
        "type": "FeatureCollection",
        "source": f"{UPSTREAM} {upstream_path}",
        "license": "Apache-2.0 (see LICENSE and NOTICE beside this file)",
        "modified": f"simplified: tolerance {tolerance} deg, grid {grid} deg (README.md)",
    }
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    head = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))[:-1]
    text = head + ',"features":[\n' + ",\n".join(lines) + "\n]}\n"
    (OUT / out_name).write_text(text, encoding="utf-8")
    return {
        "file": out_name,
        "features": f"{len(rows)} of {len(source['features'])}",
        "points": f"{sum(r['points'] for r in rows)} (source {_points(source)})",
        "bytes": len(text.encode()),
        "overlap_m2": round(check["overlap_m2"], 1),
        "holes_in_the_city": f"{check['holes']} (source {check['source_holes']})",
        "max_area_change_pct": round(100 * check["max_area_change"], 3),
        "random_points_in_another_polygon": f"{check['moved']} of {check['points']}",
    }


def _points(doc: dict) -> int:  # type: ignore[type-arg]
    def count(c: object) -> int:
        if isinstance(c, list) and c and isinstance(c[0], (int, float)):
            return 1
        return sum(count(x) for x in c) if isinstance(c, list) else 0

    return sum(count(f["geometry"]["coordinates"]) for f in doc["features"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ansim"),
    )
    args = parser.parse_args()
    conn = await asyncpg.connect(args.database_url)
    try:
        for layer in LAYERS:
            print(json.dumps(await build(conn, layer), ensure_ascii=False))
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
