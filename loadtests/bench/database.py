"""The benchmark database: created and migrated once per schema, seeded with places, districts
and people, emptied of incidents before every run."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import subprocess
import sys
import uuid
from typing import Any

import asyncpg

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.devices.service import create_device
from app.security.accounts import NewStaff, create_members, create_staff_many
from loadtests import openloop
from loadtests.bench import ROOT
from loadtests.paths import SEOUL


def sh(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> None:
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=timeout)


def _schema_fingerprint() -> str:
    """The migrations as they are now: a migration edited in place (before it lands) leaves a
    database that says it is at head with another schema, and the runs measure that one."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return "ansim bench, migrations " + digest.hexdigest()[:16]


async def prepare_database(db_url: str, env: dict[str, str]) -> None:
    """Create and migrate the benchmark database. One this harness built from other migrations
    (its comment records which) is dropped first; a database it did not build is only migrated.
    Places and districts are kept between runs."""
    name = db_url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(db_url.rsplit("/", 1)[0] + "/postgres")
    try:
        fingerprint = _schema_fingerprint()
        row = await admin.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS built FROM pg_database"
            " WHERE datname = $1",
            name,
        )
        built = row["built"] if row else None
        stale = built is not None and built.startswith("ansim bench") and built != fingerprint
        if stale:
            print(f"[bench] {name} was built from other migrations: dropping it", flush=True)
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        sh(["bash", "scripts/ensure_db.sh", db_url], env)
        sh([sys.executable, "-m", "app.cli", "db", "upgrade"], env)
        if row is None or stale:
            await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{fingerprint}'")
    finally:
        await admin.close()


KEEP = {"spatial_ref_sys", "alembic_version", "district", "safe_place", "device"}


async def seed(
    db_url: str,
    *,
    places: int,
    members: int,
    consoles: int,
    volunteers: int = 20,
    devices: int = 50,
) -> dict[str, Any]:
    """Fresh people and no incidents for every run; places and districts once. The people and
    buttons are made by the project's own account and device code (in bulk)."""
    conn = await asyncpg.connect(db_url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            if r["tablename"] not in KEEP
        ]
        await conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        if await conn.fetchval("SELECT count(*) FROM district") < 25:
            await _seed_districts(conn)
        have = await conn.fetchval("SELECT count(*) FROM safe_place")
        if have != places:
            await _seed_places(conn, places)
        people = await _seed_people(
            db_url, members=members, consoles=consoles, volunteers=volunteers
        )
        # Panic buttons in the first safety houses (the devices API signs with these secrets).
        await conn.execute("DELETE FROM device WHERE label LIKE 'bench-%'")
        houses = await conn.fetch(
            "SELECT id, external_ref FROM safe_place WHERE kind = 'safety_house'"
            " ORDER BY external_ref LIMIT $1",
            devices,
        )
        buttons = [
            await create_device(conn, place_id=h["id"], label=f"bench-{h['external_ref']}")
            for h in houses
        ]
        await conn.execute("ANALYZE")
        return {
            **people,
            "member_pin": "1234",
            "devices": [{"id": str(b.device_id), "secret": b.secret} for b in buttons],
        }
    finally:
        await conn.close()


async def _seed_people(
    db_url: str, *, members: int, consoles: int, volunteers: int
) -> dict[str, list[str]]:
    """Members (one per SOS in a run), city-wide dispatchers (one per console) and volunteers."""
    settings = Settings(database_url=db_url)
    engine = create_engine(settings, application_name="ansim-bench-seed")
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            member_tokens = await create_members(
                session,
                [(f"+8210{n:08d}", f"Bench {n}") for n in range(members)],
                pin="1234",
                duress_pin="9999",
                token_label="bench",
            )
            day = 86_400
            console_tokens = await create_staff_many(
                session,
                [NewStaff(f"bench-d{n}", f"Bench dispatcher {n}", city_wide=True)
                 for n in range(consoles)],
                role="dispatcher",
                password="bench-password",
                ttl_s=day,
            )  # fmt: skip
            volunteer_tokens = await create_staff_many(
                session,
                [NewStaff(f"bench-v{n}", f"Bench volunteer {n}", badge_number=f"SRS-{n}")
                 for n in range(volunteers)],
                role="volunteer",
                password="bench-password",
                ttl_s=day,
            )  # fmt: skip
    finally:
        await engine.dispose()
    return {
        "member_tokens": member_tokens,
        "console_tokens": console_tokens,
        "volunteer_tokens": volunteer_tokens,
    }


async def _seed_districts(conn: asyncpg.Connection) -> None:
    gj = json.loads((SEOUL / "seoul_gu_boundaries_kostat2013_simplified.geojson").read_text())
    await conn.execute("DELETE FROM district")
    for f in gj["features"]:
        p = f["properties"]
        await conn.execute(
            """INSERT INTO district (id, code, name, name_en, boundary) VALUES
               ($1, $2, $3, $4, ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON($5), 4326)))""",
            uuid.uuid4(),
            p["code"],
            p["name"],
            p.get("name_eng"),
            json.dumps(f["geometry"]),
        )


def _real_places() -> list[tuple[str, str, str | None, str | None, float, float, bool]]:
    """Seoul's Women Safety Houses (2021) and police offices: kind, name, address, phone, lat,
    lon, is_safety_house."""
    out = []
    with (SEOUL / "seoul_women_safety_houses_2021.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            with contextlib.suppress(ValueError, KeyError):
                out.append(
                    (
                        "safety_house",
                        r["name"],
                        r["road_address"],
                        r["tel_number"] or None,
                        float(r["lat"]),
                        float(r["lng"]),
                        True,
                    )
                )
    with (SEOUL / "seoul_police_stations_jigudae_pachulso_2020.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            with contextlib.suppress(ValueError, KeyError):
                out.append(
                    (
                        "police_box",
                        r["지구대파출소"],
                        r["주소"],
                        "112",
                        float(r["Y좌표"]),
                        float(r["X좌표"]),
                        False,
                    )
                )
    return out


async def _seed_places(conn: asyncpg.Connection, total: int) -> None:
    import random

    real = _real_places()[:total]
    rng = random.Random(42)
    rows = list(real)
    for i in range(total - len(real)):
        lat, lon = (
            rng.uniform(openloop.LAT0, openloop.LAT1),
            rng.uniform(openloop.LON0, openloop.LON1),
        )
        rows.append(("convenience_store", f"Bench store {i}", None, None, lat, lon, False))
    await conn.execute("DELETE FROM safe_place")
    cols = list(zip(*rows, strict=True))
    # One place in eight keeps opening hours (07-23): the open-now filter does real work.
    hours = [i % 8 != 7 for i in range(len(rows))]
    await conn.execute(
        """INSERT INTO safe_place (id, kind, name, address, phone, open_24h, opens_at, closes_at,
                                   is_safety_house, source, external_ref, geog)
           SELECT gen_random_uuid(), k, n, a, p, h,
                  CASE WHEN h THEN NULL ELSE time '07:00' END,
                  CASE WHEN h THEN NULL ELSE time '23:00' END,
                  s, 'bench', 'bench-' || ord,
                  ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],
                       $6::float8[], $7::bool[], $8::bool[])
                WITH ORDINALITY AS u(k, n, a, p, lat, lon, s, h, ord)""",
        *cols[:4],
        cols[4],
        cols[5],
        cols[6],
        hours,
    )


async def flush_redis(redis_url: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    try:
        await r.flushdb()
    finally:
        await r.aclose()


async def backend_pids(db_url: str, dbname: str) -> list[int]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            dbname,
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


PEOPLE = {"member", "member_token", "guardian", "staff", "staff_token", "staff_district"}


async def clear_incidents(db_url: str, ceiling: bool) -> None:
    """Every profile starts from an empty incident log (the people and places stay)."""
    conn = await asyncpg.connect(db_url)
    try:
        if ceiling:
            await conn.execute("TRUNCATE incidents")
            return
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            if r["tablename"] not in KEEP | PEOPLE
        ]
        await conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    finally:
        await conn.close()


async def checkpoint(db_url: str) -> None:
    """Every measurement (ours and the ceiling's, on the same server) starts right after a
    checkpoint: none falls inside it (checkpoint_timeout is 5 min), and both pay the
    full-page images that follow one from the same start."""
    conn = await asyncpg.connect(db_url)
    try:
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
