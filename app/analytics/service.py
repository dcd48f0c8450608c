"""Aggregates of incidents for the city safety office and district police: by district, dong,
hour of the week, source and outcome, a k-anonymous heat map on a square grid, and Seoul's
five-major-crimes counts as a comparison layer.

Every query reads ``analytics_incident`` (migration 0023), a materialized view with one narrow
row per incident and its dong and grid coordinates computed once, refreshed by the dispatchers;
never the incident table the SOS path writes. A scope of districts (a district dispatcher's)
restricts every aggregate to incidents of those districts."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from app.errors import BadRequest
from app.geo.importers import SEOUL_SIG_CD, ImportFailed, RowProblem
from app.geo.shipped import SEOUL_DONGS

#: The crimes of the five-major-crimes file, by their column prefix.
CRIMES = {
    "합계": "total",
    "살인": "murder",
    "강도": "robbery",
    "강간강제추행": "sexual_assault",
    "절도": "theft",
    "폭력": "violence",
}
#: Square grid cells, metres on EPSG:5179 (Korea 2000 / Unified CS).
MIN_CELL_M, MAX_CELL_M = 100, 5000
OUTCOMES = ("open", "resolved", "false_alarm", "cancelled")
#: One dispatcher at a time refreshes the view (pg_try_advisory_xact_lock key).
_REFRESH_LOCK = 0x616E_616C  # "anal"


@dataclass(frozen=True)
class Query:
    """A period [since, until) and a scope: ``district_ids`` None for city-wide."""

    since: datetime
    until: datetime
    district_ids: list[uuid.UUID] | None

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise BadRequest("until must be after since")


_WHERE = """a.received_at >= $1 AND a.received_at < $2
  AND ($3::uuid[] IS NULL OR a.district_id = ANY($3::uuid[]))"""


def _args(q: Query) -> list[Any]:
    return [q.since, q.until, q.district_ids]


_ACK = """count(*)::int AS incidents,
  count(*) FILTER (WHERE a.outcome = 'false_alarm')::int AS false_alarms,
  count(*) FILTER (WHERE a.outcome = 'resolved')::int AS resolved,
  count(*) FILTER (WHERE a.outcome = 'open')::int AS open,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ack_s) AS ack_p50_s,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY a.ack_s) AS ack_p90_s"""

_DISTRICTS_SQL = f"""
SELECT d.code, d.name, c.* FROM (
  SELECT a.district_id, {_ACK} FROM analytics_incident a WHERE {_WHERE}
  GROUP BY a.district_id
) c LEFT JOIN district d ON d.id = c.district_id
ORDER BY c.incidents DESC, d.code NULLS LAST
"""

_DONGS_SQL = f"""
SELECT c.dong_code AS code, dn.name, dn.district_code, c.incidents, c.false_alarms, c.resolved
FROM (
  SELECT a.dong_code, count(*)::int AS incidents,
         count(*) FILTER (WHERE a.outcome = 'false_alarm')::int AS false_alarms,
         count(*) FILTER (WHERE a.outcome = 'resolved')::int AS resolved
  FROM analytics_incident a WHERE {_WHERE} AND a.dong_code IS NOT NULL
  GROUP BY a.dong_code
) c JOIN dong dn ON dn.code = c.dong_code
ORDER BY c.incidents DESC, c.dong_code
"""

_HOURS_SQL = f"""
SELECT a.hour_of_week, count(*)::int AS incidents FROM analytics_incident a WHERE {_WHERE}
GROUP BY a.hour_of_week ORDER BY a.hour_of_week
"""

_OUTCOMES_SQL = f"""
SELECT a.source, a.outcome, count(*)::int AS incidents,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ack_s) AS ack_p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY a.ack_s) AS ack_p90_s,
       avg(a.ack_s) AS ack_mean_s
FROM analytics_incident a WHERE {_WHERE}
GROUP BY a.source, a.outcome ORDER BY a.source, a.outcome
"""

# The cell (i, j) of a point is floor(x / size), floor(y / size): ST_Square(size, i, j) is that
# cell of ST_SquareGrid(size, ...), so the grid is never generated, only the cells shown.
_HEATMAP_SQL = f"""
SELECT c.i, c.j, c.incidents,
       ST_AsGeoJSON(ST_Transform(ST_Square($4::float8, c.i, c.j,
                                           ST_SetSRID(ST_MakePoint(0, 0), 5179)), 4326), 6)
         AS geometry
FROM (
  SELECT floor(a.x / $4)::int AS i, floor(a.y / $4)::int AS j, count(*)::int AS incidents
  FROM analytics_incident a WHERE {_WHERE} AND a.x IS NOT NULL
  GROUP BY 1, 2 HAVING count(*) >= $5
) c ORDER BY c.incidents DESC, c.i, c.j
"""

_HIDDEN_SQL = f"""
SELECT count(*)::int AS cells, coalesce(sum(n), 0)::int AS incidents FROM (
  SELECT count(*) AS n FROM analytics_incident a WHERE {_WHERE} AND a.x IS NOT NULL
  GROUP BY floor(a.x / $4), floor(a.y / $4) HAVING count(*) < $5
) h
"""

_CRIMES_SQL = """
SELECT c.district_code AS code, d.name, c.crime, c.occurred, c.arrested
FROM crime_stat c LEFT JOIN district d ON d.code = c.district_code
WHERE c.year = $1 AND ($2::text[] IS NULL OR c.district_code = ANY($2::text[]))
ORDER BY c.district_code, c.crime
"""


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


async def by_district(pool: asyncpg.Pool, q: Query) -> list[dict[str, Any]]:
    rows = await pool.fetch(_DISTRICTS_SQL, *_args(q))
    return [
        {
            "code": r["code"],
            "name": r["name"],
            "incidents": r["incidents"],
            "false_alarms": r["false_alarms"],
            "resolved": r["resolved"],
            "open": r["open"],
            "ack_p50_s": _round(r["ack_p50_s"]),
            "ack_p90_s": _round(r["ack_p90_s"]),
        }
        for r in rows
    ]


async def by_dong(pool: asyncpg.Pool, q: Query) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(_DONGS_SQL, *_args(q))]


async def by_hour_of_week(pool: asyncpg.Pool, q: Query) -> list[int]:
    """168 counts, Monday 00:00-01:00 first, in the city's time zone."""
    counts = [0] * 168
    for r in await pool.fetch(_HOURS_SQL, *_args(q)):
        counts[r["hour_of_week"]] = r["incidents"]
    return counts


async def by_outcome(pool: asyncpg.Pool, q: Query) -> list[dict[str, Any]]:
    return [
        {
            "source": r["source"],
            "outcome": r["outcome"],
            "incidents": r["incidents"],
            "ack_p50_s": _round(r["ack_p50_s"]),
            "ack_p90_s": _round(r["ack_p90_s"]),
            "ack_mean_s": _round(r["ack_mean_s"]),
        }
        for r in await pool.fetch(_OUTCOMES_SQL, *_args(q))
    ]


@dataclass(frozen=True)
class Heatmap:
    cell_m: int
    k: int
    cells: list[dict[str, Any]]
    hidden_cells: int
    hidden_incidents: int


async def heatmap(pool: asyncpg.Pool, q: Query, *, cell_m: int, k: int) -> Heatmap:
    """Square cells of ``cell_m`` metres with at least ``k`` incidents; how many cells (and
    incidents in them) were held back is reported, never where they are."""
    if not MIN_CELL_M <= cell_m <= MAX_CELL_M:
        raise BadRequest(f"cell_m must be from {MIN_CELL_M} to {MAX_CELL_M}")
    rows, hidden = await asyncio.gather(
        pool.fetch(_HEATMAP_SQL, *_args(q), float(cell_m), k),
        pool.fetchrow(_HIDDEN_SQL, *_args(q), float(cell_m), k),
    )
    assert hidden is not None
    return Heatmap(
        cell_m=cell_m,
        k=k,
        cells=[
            {
                "i": r["i"],
                "j": r["j"],
                "incidents": r["incidents"],
                "geometry": orjson.loads(r["geometry"]),
            }
            for r in rows
        ],
        hidden_cells=hidden["cells"],
        hidden_incidents=hidden["incidents"],
    )


async def crimes(
    pool: asyncpg.Pool, *, year: int, district_codes: list[str] | None
) -> list[dict[str, Any]]:
    """The comparison layer: each district's five-major-crimes counts in ``year``."""
    out: dict[str, dict[str, Any]] = {}
    for r in await pool.fetch(_CRIMES_SQL, year, district_codes):
        row = out.setdefault(r["code"], {"code": r["code"], "name": r["name"]})
        row[r["crime"]] = r["occurred"]
        row[f"{r['crime']}_arrested"] = r["arrested"]
    return list(out.values())


async def crime_years(pool: asyncpg.Pool) -> list[int]:
    return [r["year"] for r in await pool.fetch("SELECT DISTINCT year FROM crime_stat ORDER BY 1")]


async def district_codes(pool: asyncpg.Pool, district_ids: Sequence[uuid.UUID]) -> list[str]:
    rows = await pool.fetch(
        "SELECT code FROM district WHERE id = ANY($1::uuid[]) ORDER BY code", list(district_ids)
    )
    return [r["code"] for r in rows]


async def refreshed_at(pool: asyncpg.Pool) -> tuple[datetime | None, float | None]:
    row = await pool.fetchrow("SELECT refreshed_at, seconds FROM analytics_refresh WHERE id = 1")
    return (row["refreshed_at"], row["seconds"]) if row else (None, None)


async def refresh(pool: asyncpg.Pool) -> float | None:
    """Refresh the analytics view (readers keep reading the old rows meanwhile); None when
    another process is refreshing it right now. Returns the seconds it took."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _REFRESH_LOCK):
            return None
        started = time.perf_counter()
        await conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY analytics_incident")
        seconds = time.perf_counter() - started
        await conn.execute(
            "INSERT INTO analytics_refresh (id, refreshed_at, seconds) VALUES (1, now(), $1)"
            " ON CONFLICT (id) DO UPDATE SET refreshed_at = now(), seconds = $1",
            seconds,
        )
    return seconds


# --- reference data ---------------------------------------------------------------------

_UPSERT_DONGS = """
INSERT INTO dong AS d (code, name, name_en, district_code, boundary)
SELECT r.code, r.name, r.name_en, r.sig,
       ST_Multi(ST_CollectionExtract(ST_MakeValid(
         ST_SetSRID(ST_Force2D(ST_GeomFromGeoJSON(r.gj)), 4326)), 3))
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
     AS r(code, name, name_en, sig, gj)
ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, name_en = EXCLUDED.name_en,
  district_code = EXCLUDED.district_code, boundary = EXCLUDED.boundary
"""


async def import_dongs(conn: asyncpg.Connection, path: Path = SEOUL_DONGS) -> int:
    """The legal dongs of a GeoJSON file with JUSO's properties (EMD_CD, EMD_KOR_NM,
    EMD_ENG_NM, SIG_CD): by default the ones shipped in app/geo/data/seoul/."""
    try:
        doc = orjson.loads(await asyncio.to_thread(path.read_bytes))
        features = doc["features"]
        rows = [
            (
                str(f["properties"]["EMD_CD"]),
                str(f["properties"]["EMD_KOR_NM"]),
                f["properties"].get("EMD_ENG_NM"),
                f["properties"].get("SIG_CD") or str(f["properties"]["EMD_CD"])[:5],
                orjson.dumps(f["geometry"]).decode(),
            )
            for f in features
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ImportFailed(f"{path}: not a dongs GeoJSON with EMD_CD/EMD_KOR_NM: {exc}") from exc
    async with conn.transaction():
        await conn.execute(_UPSERT_DONGS, *(list(col) for col in zip(*rows, strict=True)))
    return len(rows)


def read_crimes(text: str) -> tuple[list[tuple[int, str, str, int, int]], list[RowProblem]]:
    """Rows (year, district code, crime, occurred, arrested) of the five-major-crimes CSV
    (``기간,자치구,합계_발생,합계_검거,...``); the Seoul total rows (자치구 = 합계) are left out.
    Problems by spreadsheet row number (the header is row 1)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [
        c
        for c in ("기간", "자치구", *(f"{k}_{x}" for k in CRIMES for x in ("발생", "검거")))
        if c not in header
    ]
    if missing:
        raise ImportFailed(f"not the five-major-crimes file: missing columns {missing}")
    out: list[tuple[int, str, str, int, int]] = []
    problems: list[RowProblem] = []
    for n, row in enumerate(reader, start=2):
        name = (row.get("자치구") or "").strip()
        if name == "합계":
            continue
        code = SEOUL_SIG_CD.get(name)
        if code is None:
            problems.append(RowProblem(n, f"unknown district {name[:40]!r}"))
            continue
        try:
            year = int((row.get("기간") or "").strip())
            values = {k: (_count(row[f"{k}_발생"]), _count(row[f"{k}_검거"])) for k in CRIMES}
        except (ValueError, AttributeError):
            problems.append(RowProblem(n, "year and counts must be whole numbers"))
            continue
        if not 1900 <= year <= 2100 or any(v < 0 for pair in values.values() for v in pair):
            problems.append(RowProblem(n, "year out of range or a negative count"))
            continue
        out.extend((year, code, CRIMES[k], occ, arr) for k, (occ, arr) in values.items())
    return out, problems


def _count(text: str) -> int:
    """A count of the statistics file: "-" is the statistics' way of writing none."""
    text = text.strip().replace(",", "")
    return 0 if text == "-" else int(text)


async def import_crimes(conn: asyncpg.Connection, text: str) -> int:
    """All rows or none (``ImportFailed`` names each bad row); replaces those years."""
    rows, problems = read_crimes(text)
    if problems:
        raise ImportFailed(
            "nothing imported: " + "; ".join(f"row {p.row}: {p.reason}" for p in problems[:50])
        )
    if not rows:
        raise ImportFailed("no district rows")
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM crime_stat WHERE year = ANY($1::int[])", sorted({r[0] for r in rows})
        )
        await conn.executemany(
            "INSERT INTO crime_stat (year, district_code, crime, occurred, arrested)"
            " VALUES ($1, $2, $3, $4, $5)",
            rows,
        )
    return len(rows) // len(CRIMES)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
