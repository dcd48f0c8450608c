"""The cameras-and-bells lookup at city scale (issue 22 §1), and its absence from the SOS path.

    python -m loadtests.assets_bench [--assets 40000] [--lookups 2000] [--sos 200]
    make bench-assets

It builds its own database (``<name>_assetbench`` beside ``DATABASE_URL``'s, migrated to head),
imports Seoul's districts (the shipped file) and the real CCTV and emergency-bell files from
``../shared`` with ``ansim assets import``'s code (timed), then tops the table up to ``--assets``
with copies of random real sites moved up to 200 m (the city's density, not a uniform spray).
It measures, on one connection and then through the app in-process (httpx ``ASGITransport``: no
network, the whole handler with its auth, scope check and access-log write):

- **lookup**: ``assets_near`` at each radius (``--radii``), from points half near a real site
  (jittered up to 300 m: where the lists are long) and half anywhere in the city's box;
- **endpoint**: ``GET /v1/console/incidents/{id}/assets`` (default radius and the largest) for
  the incidents the SOS phase raised;
- **SOS intake**: ``POST /v1/alerts`` in rounds alternating an empty ``public_asset`` table and a
  full one (p50/p99 of each), and the table's scan counters (``pg_stat_user_tables``) across a
  run of SOS with the table full: the intake never reads it.

Results are printed and written as JSON (``--out``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.assets.importer import import_assets
from app.assets.nearby import assets_near
from app.config import Settings
from app.db import create_engine, create_pool, create_sessionmaker
from app.geo.importers import district_spec, import_districts
from app.geo.shipped import SEOUL_DISTRICTS
from app.main import create_app
from app.security.accounts import NewStaff, create_members, create_staff_many
from loadtests.paths import SEOUL
from loadtests.safe_return_bench import _pct, prepare

APP_NAME = "ansim-assetbench"
CCTV = "seoul_public_cctv_district_standard_2019_2020.csv"
BELLS = "seoul_safety_emergency_bells.csv"
#: Seoul's box (SOURCES.md): lat 37.41-37.72, lon 126.76-127.19.
CITY = (126.76, 37.41, 127.19, 37.72)

_TOP_UP = """
INSERT INTO public_asset (id, kind, source, external_ref, name, address, office, phone, cameras,
                          direction, purpose, geog)
SELECT gen_random_uuid(), a.kind, 'bench-synthetic', 'copy-' || $2::int || '-' || a.n, a.name,
       a.address, a.office, a.phone, a.cameras, a.direction, a.purpose,
       ST_Project(a.geog, random() * 200, random() * 2 * pi())
FROM (SELECT *, row_number() OVER (ORDER BY random()) AS n FROM public_asset
      WHERE source <> 'bench-synthetic') a
WHERE a.n <= $1
"""

_SCANS = """
SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans,
       coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS rows_read
FROM pg_stat_user_tables WHERE relname = 'public_asset'
"""


def _ms(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": round(1000 * (_pct(values, 0.50) or 0), 2),
        "p99_ms": round(1000 * (_pct(values, 0.99) or 0), 2),
        "max_ms": round(1000 * max(values), 2) if values else None,
    }


async def seed(db_url: str, *, assets: int, members: int) -> dict[str, Any]:
    if not SEOUL.is_dir():
        raise SystemExit(f"the shared Seoul open data is not at {SEOUL} (ANSIM_SHARED_DIR)")
    conn = await asyncpg.connect(db_url)
    try:
        await import_districts(
            conn, data=SEOUL_DISTRICTS.read_bytes(), spec=district_spec(preset="seoul-gu-juso")
        )
        imports = {}
        for name, kind in ((CCTV, "cctv"), (BELLS, "bell")):
            t = time.perf_counter()
            report = await import_assets(
                conn, data=(SEOUL / name).read_bytes(), kind=kind, source=kind
            )
            imports[kind] = {
                "rows": report.rows,
                "stored": report.inserted,
                "seconds": round(time.perf_counter() - t, 2),
            }
        real = await conn.fetchval("SELECT count(*) FROM public_asset")
        round_no = 0
        while (have := await conn.fetchval("SELECT count(*) FROM public_asset")) < assets:
            await conn.execute(_TOP_UP, min(assets - have, real), round_no)
            round_no += 1
        await conn.execute("CREATE TABLE bench_asset_copy AS SELECT * FROM public_asset")
        await conn.execute("ANALYZE public_asset")
        total = await conn.fetchval("SELECT count(*) FROM public_asset")
        by_kind = dict(
            await conn.fetch("SELECT kind, count(*) FROM public_asset GROUP BY kind ORDER BY 1")
        )
    finally:
        await conn.close()
    engine = create_engine(Settings(database_url=db_url), application_name=APP_NAME)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            member_tokens = await create_members(
                session,
                [(f"+8210{n:08d}", f"Bench {n}") for n in range(members)],
                pin="1234",
                duress_pin="9999",
                token_label="assetbench",
            )
            (console_token,) = await create_staff_many(
                session,
                [NewStaff("assetbench-d", "Bench dispatcher", city_wide=True)],
                role="dispatcher",
                password="bench-password",
                ttl_s=86_400,
            )
    finally:
        await engine.dispose()
    return {
        "imports": imports,
        "real_assets": real,
        "assets": total,
        "by_kind": by_kind,
        "member_tokens": member_tokens,
        "console_token": console_token,
    }


def _points(
    rng: random.Random, sites: list[tuple[float, float]], n: int
) -> list[tuple[float, float]]:
    """Half near a real site (up to ~300 m off), half anywhere in the city's box."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            lat, lon = rng.choice(sites)
            out.append((lat + rng.uniform(-0.0027, 0.0027), lon + rng.uniform(-0.0034, 0.0034)))
        else:
            out.append((rng.uniform(CITY[1], CITY[3]), rng.uniform(CITY[0], CITY[2])))
    return out


async def measure_lookups(
    pool: asyncpg.Pool, points: list[tuple[float, float]], radii: list[float], limit: int
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for radius in radii:
        for lat, lon in points[:50]:  # warm the cache and the plan
            await assets_near(pool, lat=lat, lon=lon, radius_m=radius, limit=limit)
        times: list[float] = []
        within: list[int] = []
        for lat, lon in points:
            t = time.perf_counter()
            found = await assets_near(pool, lat=lat, lon=lon, radius_m=radius, limit=limit)
            times.append(time.perf_counter() - t)
            within.append(found.cameras_within + found.bells_within)
        result[f"{radius:g}m"] = {
            **_ms(times),
            "mean_within": round(sum(within) / len(within), 1),
            "max_within": max(within),
        }
    return result


async def _sos_round(
    http: httpx.AsyncClient, tokens: list[str], points: list[tuple[float, float]]
) -> tuple[list[float], list[str]]:
    times, ids = [], []
    for token, (lat, lon) in zip(tokens, points, strict=False):
        body = {
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": lat, "lon": lon, "accuracy_m": 10},
        }
        t = time.perf_counter()
        r = await http.post("/v1/alerts", json=body, headers={"Authorization": f"Bearer {token}"})
        times.append(time.perf_counter() - t)
        if r.status_code != 201:
            raise SystemExit(f"SOS answered {r.status_code}: {r.text[:200]}")
        ids.append(r.json()["incident_id"])
    return times, ids


async def _scans(db_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(_SCANS)
        return int(row["scans"]), int(row["rows_read"])
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    db_url = args.database_url or base.asyncpg_dsn.rsplit("/", 1)[0] + "/ansim_assetbench"
    await prepare(db_url)
    rounds, per_round = args.rounds, args.sos
    seeded = await seed(db_url, assets=args.assets, members=(2 * rounds + 1) * per_round)
    print(f"[assetbench] {seeded['assets']} assets ({seeded['imports']})", flush=True)
    tokens: list[str] = seeded.pop("member_tokens")
    console = {"Authorization": f"Bearer {seeded.pop('console_token')}"}
    settings = base.model_copy(
        update={
            "database_url": db_url,
            "rate_limit_per_credential_per_min": 10**9,
            "rate_limit_per_ip_per_min": 10**9,
        }
    )
    rng = random.Random(args.seed)
    pool = await create_pool(settings, application_name=APP_NAME, min_size=1, max_size=1)
    try:
        sites = [(r["lat"], r["lon"]) for r in await pool.fetch(
            "SELECT ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon FROM public_asset"
            " WHERE source <> 'bench-synthetic'")]  # fmt: skip
        points = _points(rng, sites, args.lookups)
        lookups = await measure_lookups(pool, points, args.radii, args.limit)
        print(f"[assetbench] lookups: {lookups}", flush=True)
    finally:
        await pool.close()

    # The SOS intake with the table full: its scan counters before and after (the app's
    # backends flush their statistics when its pool closes).
    sos_points = _points(rng, sites, len(tokens))
    scans_before = await _scans(db_url)
    app = create_app(settings, process_name=APP_NAME)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http,
    ):
        _, incidents = await _sos_round(http, tokens[:per_round], sos_points[:per_round])
    await asyncio.sleep(1.5)
    scans_after = await _scans(db_url)
    # The control: the same counters move for the console's lookups (the check can fail).
    app = create_app(settings, process_name=APP_NAME)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http,
    ):
        for incident in incidents[:10]:
            await http.get(f"/v1/console/incidents/{incident}/assets", headers=console)
    await asyncio.sleep(1.5)
    scans_control = await _scans(db_url)

    # Latency: rounds alternating an empty table and a full one, so drift hits both alike.
    latency: dict[str, list[float]] = {"empty": [], "full": []}
    endpoint: dict[str, list[float]] = {"default": [], "largest": []}
    admin = await asyncpg.connect(db_url)
    app = create_app(settings, process_name=APP_NAME)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ) as http,
        ):
            used = per_round
            for n in range(2 * rounds):
                condition = "empty" if n % 2 == 0 else "full"
                if condition == "empty":
                    await admin.execute("TRUNCATE public_asset")
                else:
                    await admin.execute(
                        "INSERT INTO public_asset SELECT * FROM bench_asset_copy;"
                        " ANALYZE public_asset"
                    )
                batch = slice(used, used + per_round)
                times, ids = await _sos_round(http, tokens[batch], sos_points[batch])
                latency[condition].extend(times)
                incidents += ids
                used += per_round
            # The console's lookup through the app, for the incidents raised above.
            urls = [f"/v1/console/incidents/{i}/assets" for i in incidents]
            for which, query in (
                ("default", ""),
                ("largest", f"?radius_m={settings.assets_max_radius_m:g}"),
            ):
                for url in urls[:20]:
                    await http.get(url + query, headers=console)
                for url in (urls * 4)[: args.lookups]:
                    t = time.perf_counter()
                    r = await http.get(url + query, headers=console)
                    endpoint[which].append(time.perf_counter() - t)
                    if r.status_code != 200:
                        raise SystemExit(f"lookup answered {r.status_code}: {r.text[:200]}")
    finally:
        await admin.close()

    return {
        **seeded,
        "limit": args.limit,
        "lookup": lookups,
        "endpoint": {
            f"{settings.assets_radius_m:g}m": _ms(endpoint["default"]),
            f"{settings.assets_max_radius_m:g}m": _ms(endpoint["largest"]),
        },
        "sos": {
            "rounds": rounds,
            "per_round": per_round,
            "assets_empty": _ms(latency["empty"]),
            f"assets_{seeded['assets']}": _ms(latency["full"]),
            "public_asset_scans_during_sos": scans_after[0] - scans_before[0],
            "public_asset_rows_read_during_sos": scans_after[1] - scans_before[1],
            "sos_in_the_scan_check": per_round,
            "public_asset_scans_during_10_lookups": scans_control[0] - scans_after[0],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=40_000)
    parser.add_argument("--lookups", type=int, default=2000, help="per radius")
    parser.add_argument(
        "--radii", type=lambda s: [float(x) for x in s.split(",")], default=[300.0, 1000.0, 2000.0]
    )
    parser.add_argument("--limit", type=int, default=10, help="of each kind per lookup")
    parser.add_argument("--sos", type=int, default=200, help="SOS per round")
    parser.add_argument("--rounds", type=int, default=3, help="empty/full round pairs")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--out", type=Path, default=Path(".bench/assets.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
