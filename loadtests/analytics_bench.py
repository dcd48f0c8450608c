"""The analytics at city scale: N incidents (1,000,000 by default) over a year in Seoul's 25
real districts, and the p50/p95 of each analytics endpoint, city-wide and for one district.

    python -m loadtests.analytics_bench [--incidents 1000000] [--requests 40]

It builds its own database (``ansim_anbench`` beside ``DATABASE_URL``'s, migrated to head),
loads the shipped districts and dongs (and the five-major-crimes file from ../shared), fills the
incidents with one INSERT ... SELECT (``ST_GeneratePoints`` inside each district, times over the
past year with more at night, sources, outcomes and acknowledgement times at random), refreshes
the analytics view (timed: what a dispatcher does every ``ANSIM_ANALYTICS_REFRESH_S``) and then
calls every endpoint through the real application (ASGI, in this process) as an operator and as
a district dispatcher, for the whole year and for one month. Results are printed and written as
JSON (``--out``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.analytics import service
from app.config import Settings
from app.geo.importers import write_districts
from app.geo.shipped import seoul_districts
from app.main import create_app
from app.security.tokens import STAFF_PREFIX, hash_token, new_token
from loadtests.paths import SEOUL
from loadtests.safe_return_bench import prepare

ENDPOINTS = (
    "/v1/analytics/districts",
    "/v1/analytics/dongs",
    "/v1/analytics/hours",
    "/v1/analytics/outcomes",
    "/v1/analytics/heatmap?cell_m=500",
    "/v1/analytics/crimes",
    "/v1/analytics/export.csv?aggregate=dongs",
)
#: 강남구, the district dispatcher's.
DISTRICT = "11680"

# Each district gets its share of points inside its own boundary (so ``district_id`` is known
# without a lookup); a quarter of the hours are 22-02 in Seoul, where most SOS come.
_FILL = """
WITH d AS (
  SELECT id, boundary, ($1::int / count(*) OVER ())::int AS n FROM district
), p AS (
  SELECT d.id AS district_id, (ST_Dump(ST_GeneratePoints(d.boundary, d.n, 22))).geom AS g
  FROM d
), r AS (
  SELECT gen_random_uuid() AS id, district_id, g, random() AS u, random() AS v,
         now() - make_interval(days => floor(random() * 365)::int)
           - make_interval(secs => CASE WHEN random() < 0.25
                                        THEN ((13 + floor(random() * 4)) * 3600)::int
                                        ELSE floor(random() * 86400)::int END) AS at
  FROM p
)
INSERT INTO incident (id, emergency_id, source, trigger, status, location, accuracy_m,
                      district_id, received_at, acknowledged_at, closed_at, disposition)
SELECT id, id,
       CASE WHEN u < 0.80 THEN 'app' WHEN u < 0.95 THEN 'button' ELSE 'sensor' END,
       'button',
       CASE WHEN v < 0.70 THEN 'resolved' WHEN v < 0.90 THEN 'false_alarm'
            WHEN v < 0.95 THEN 'cancelled' ELSE 'acknowledged' END,
       g::geography, 10, district_id, at,
       at + make_interval(secs => 3 + random() * 90),
       CASE WHEN v < 0.95 THEN at + interval '20 minutes' END,
       CASE WHEN v < 0.70 THEN 'resolved' WHEN v < 0.90 THEN 'false_alarm'
            WHEN v < 0.95 THEN 'cancelled_by_member' END
FROM r
"""


async def seed(db_url: str, incidents: int) -> dict[str, float]:
    conn = await asyncpg.connect(db_url)
    timings: dict[str, float] = {}
    try:
        await write_districts(conn, seoul_districts())
        await service.import_dongs(conn)
        crimes = SEOUL / "seoul_five_major_crimes_by_gu_2014_2018.csv"
        if crimes.is_file():
            await service.import_crimes(conn, crimes.read_text(encoding="utf-8"))
        t0 = time.monotonic()
        await conn.execute(_FILL, incidents)
        await conn.execute("ANALYZE incident")
        timings["fill_s"] = round(time.monotonic() - t0, 1)
        print(f"[anbench] {incidents} incidents in {timings['fill_s']} s", flush=True)
    finally:
        await conn.close()
    return timings


async def _staff(pool: asyncpg.Pool, role: str, district: str | None) -> str:
    staff_id = uuid.uuid4()
    token = new_token(STAFF_PREFIX)
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, city_wide, active)"
        " VALUES ($1, $2, 'Bench', $3, 'x', false, true)",
        staff_id,
        f"anbench-{role}-{staff_id.hex[:8]}",
        role,
    )
    if district:
        await pool.execute(
            "INSERT INTO staff_district SELECT $1, id FROM district WHERE code = $2",
            staff_id,
            district,
        )
    await pool.execute(
        "INSERT INTO staff_token (id, staff_id, token_hash, expires_at)"
        " VALUES ($1, $2, $3, now() + interval '1 day')",
        uuid.uuid4(),
        staff_id,
        hash_token(token),
    )
    return token


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


async def measure(settings: Settings, requests: int) -> dict[str, Any]:
    app = create_app(settings, process_name="ansim-anbench")
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        pool: asyncpg.Pool = app.state.pool
        t0 = time.monotonic()
        await service.refresh(pool)
        out["refresh_s"] = round(time.monotonic() - t0, 1)
        print(f"[anbench] view refreshed in {out['refresh_s']} s", flush=True)
        callers = {
            "city_wide": await _staff(pool, "operator", None),
            "district": await _staff(pool, "dispatcher", DISTRICT),
        }
        month = "since=2026-06-01T00:00:00%2B09:00&until=2026-07-01T00:00:00%2B09:00"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for who, token in callers.items():
                for period, query in (("year", ""), ("month", month)):
                    for path in ENDPOINTS:
                        url = path + ("&" if "?" in path else "?") + query if query else path
                        times: list[float] = []
                        for _ in range(requests):
                            t = time.perf_counter()
                            r = await http.get(url, headers={"Authorization": f"Bearer {token}"})
                            times.append(time.perf_counter() - t)
                            if r.status_code != 200:
                                raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")
                        key = f"{who} {period} {path}"
                        out[key] = _ms(times)
                        print(f"[anbench] {key}: {out[key]}", flush=True)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    db_url = args.database_url or base.asyncpg_dsn.rsplit("/", 1)[0] + "/ansim_anbench"
    if not args.reuse:
        await prepare(db_url)
        timings = await seed(db_url, args.incidents)
    else:
        timings = {}
    settings = base.model_copy(update={"database_url": db_url, "analytics_refresh_s": 0})
    result: dict[str, Any] = {"incidents": args.incidents, "requests": args.requests, **timings}
    result.update(await measure(settings, args.requests))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40, help="per endpoint, scope and period")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--reuse", action="store_true", help="measure the existing bench DB")
    parser.add_argument("--out", type=Path, default=Path(".bench/analytics.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
