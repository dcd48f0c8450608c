"""The benchmark harness: our stack beside the ceiling, same open-loop profile, same generator.

    python -m loadtests.bench [--profile all|steady|burst|idle|sweep|smoke] [options]

It creates and migrates its own database, seeds places (real Seoul safety houses and police
offices plus synthetic stores up to --places), members and city-wide dispatchers, starts N API
workers and M dispatchers, connects K WebSocket consoles, drives an open-loop arrival rate, and
then does the same against ../shared/bench/ceiling. Results: JSON and PNG under --out, and a
summary with our figures as ratios to the ceiling. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from loadtests import openloop
from loadtests.openloop import RunData, schedule, stats
from loadtests.paths import CEILING, SEOUL

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WARM_S = 2.0  # like the ceiling's probe: the first seconds (connection ramp-up) leave the stats
E2E_TARGET_MS = 100.0


# --- database -------------------------------------------------------------------------------


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
    """Fresh people and no incidents for every run; places and districts once."""
    from app.security.passwords import hash_secret
    from app.security.tokens import MEMBER_PREFIX, STAFF_PREFIX, hash_token, new_token

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

        pin, duress = hash_secret("1234"), hash_secret("9999")
        member_ids = [uuid.uuid4() for _ in range(members)]
        member_tokens = [new_token(MEMBER_PREFIX) for _ in range(members)]
        await conn.execute(
            """INSERT INTO member (id, phone, name, pin_hash, duress_pin_hash)
               SELECT id, '+8210' || lpad(n::text, 8, '0'), 'Bench ' || n, $3, $4
               FROM unnest($1::uuid[], $2::int[]) AS u(id, n)""",
            member_ids,
            list(range(members)),
            pin,
            duress,
        )
        await conn.execute(
            """INSERT INTO member_token (id, member_id, token_hash, label)
               SELECT gen_random_uuid(), m, h, 'bench' FROM unnest($1::uuid[], $2::bytea[])
               AS u(m, h)""",
            member_ids,
            [hash_token(t) for t in member_tokens],
        )
        pw = hash_secret("bench-password")
        staff_ids = [uuid.uuid4() for _ in range(consoles)]
        staff_tokens = [new_token(STAFF_PREFIX) for _ in range(consoles)]
        await conn.execute(
            """INSERT INTO staff (id, username, name, role, password_hash, city_wide)
               SELECT id, 'bench-d' || n, 'Bench dispatcher ' || n, 'dispatcher', $3, true
               FROM unnest($1::uuid[], $2::int[]) AS u(id, n)""",
            staff_ids,
            list(range(consoles)),
            pw,
        )
        await conn.execute(
            """INSERT INTO staff_token (id, staff_id, token_hash, expires_at)
               SELECT gen_random_uuid(), s, h, now() + interval '1 day'
               FROM unnest($1::uuid[], $2::bytea[]) AS u(s, h)""",
            staff_ids,
            [hash_token(t) for t in staff_tokens],
        )
        vol_ids = [uuid.uuid4() for _ in range(volunteers)]
        vol_tokens = [new_token(STAFF_PREFIX) for _ in range(volunteers)]
        await conn.execute(
            """INSERT INTO staff (id, username, name, role, password_hash, badge_number)
               SELECT id, 'bench-v' || n, 'Bench volunteer ' || n, 'volunteer', $3, 'SRS-' || n
               FROM unnest($1::uuid[], $2::int[]) AS u(id, n)""",
            vol_ids,
            list(range(volunteers)),
            pw,
        )
        await conn.execute(
            """INSERT INTO staff_token (id, staff_id, token_hash, expires_at)
               SELECT gen_random_uuid(), s, h, now() + interval '1 day'
               FROM unnest($1::uuid[], $2::bytea[]) AS u(s, h)""",
            vol_ids,
            [hash_token(t) for t in vol_tokens],
        )
        # Panic buttons in the first safety houses (the devices API signs with these secrets).
        await conn.execute("DELETE FROM device WHERE label LIKE 'bench-%'")
        device_rows = await conn.fetch(
            """INSERT INTO device (id, safe_place_id, label, secret)
               SELECT gen_random_uuid(), p.id, 'bench-' || p.external_ref, encode(
                        sha256(convert_to(p.id::text || random()::text, 'UTF8')), 'hex')
               FROM (SELECT id, external_ref FROM safe_place WHERE kind = 'safety_house'
                     ORDER BY external_ref LIMIT $1) p
               RETURNING id, secret""",
            devices,
        )
        await conn.execute("ANALYZE")
        return {
            "member_tokens": member_tokens,
            "member_pin": "1234",
            "console_tokens": staff_tokens,
            "volunteer_tokens": vol_tokens,
            "devices": [{"id": str(r["id"]), "secret": r["secret"]} for r in device_rows],
        }
    finally:
        await conn.close()


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


# --- processes ------------------------------------------------------------------------------


@dataclass
class Stack:
    name: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logdir: Path = Path("/tmp")

    def spawn(self, key: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        log = open(self.logdir / f"{self.name}-{key}.log", "wb")  # noqa: SIM115
        self.procs[key] = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def pids(self, prefix: str) -> list[int]:
        out = []
        for key, p in self.procs.items():
            if key.startswith(prefix) and p.poll() is None:
                out.append(p.pid)
                with contextlib.suppress(psutil.Error):
                    out.extend(c.pid for c in psutil.Process(p.pid).children(recursive=True))
        return out

    def stop(self, timeout: float = 10) -> None:
        children = []
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(psutil.Error):
                    children.extend(psutil.Process(p.pid).children(recursive=True))
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for c in children:  # uvicorn's worker processes, if their supervisor was killed
            with contextlib.suppress(psutil.Error):
                c.kill()
        self.procs.clear()

    def check_alive(self) -> None:
        for key, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{self.name} {key} exited; see {self.logdir}")


def wait_http(urls: list[str], timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(pending[0], timeout=1).status_code == 200:
                pending.pop(0)
                continue
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"not up: {pending}")


def start_ours(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> Stack:
    stack = Stack("ansim", logdir=logdir)
    uv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    stack.spawn(
        "api",
        [
            *uv,
            "--host",
            HOST,
            "--port",
            str(args.port),
            "--workers",
            str(args.api_workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            # As `ansim serve` (uvicorn's default WebSocket implementation, sans-I/O websockets):
            # console messages are small and go to many sockets; deflate per socket cost more
            # CPU than everything else in the fan-out.
            "--ws-per-message-deflate",
            "false",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ],
        env,
        ROOT,
    )
    for i in range(args.dispatchers):
        stack.spawn(
            f"dispatcher{i}",
            [sys.executable, "-m", "app.dispatch.cli", "dispatcher", "--name", f"bench-{i}"],
            env,
            ROOT,
        )
    try:
        wait_http([f"http://{HOST}:{args.port}/healthz"])
        time.sleep(0.5 * args.api_workers)  # every worker has finished its lifespan startup
        stack.check_alive()
    except Exception:
        stack.stop()
        raise
    return stack


def start_ceiling(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> Stack:
    """Exactly the processes run.sh starts (same uvicorn options)."""
    dsn = env["CEILING_DSN"]
    if subprocess.run(
        ["psql", dsn, "-Atc", "select count(*) from safe_places"], capture_output=True
    ).returncode:
        admin = dsn.rsplit("/", 1)[0] + "/postgres"
        sh(["psql", admin, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(CEILING / "setup.sql")])
    sh(["psql", dsn, "-qc", "truncate incidents"])
    stack = Stack("ceiling", logdir=logdir)
    common = ["--host", HOST, "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    stack.spawn(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api:app",
            *common,
            "--port",
            env["CEILING_API_PORT"],
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ],
        env,
        CEILING,
    )
    stack.spawn(
        "dispatcher",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "dispatcher:app",
            *common,
            "--port",
            env["CEILING_DISPATCH_PORT"],
            "--ws",
            "websockets",
            "--log-level",
            "warning",
        ],
        env,
        CEILING,
    )
    try:
        wait_http(
            [
                f"http://{HOST}:{env['CEILING_API_PORT']}/health",
                f"http://{HOST}:{env['CEILING_DISPATCH_PORT']}/health",
            ]
        )
    except Exception:
        stack.stop()
        raise
    return stack


# --- CPU by process -------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds per group of processes between start() and stop()."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.t0: dict[int, float] = {}
        self.wall0 = 0.0

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return None

    def start(self) -> None:
        self.wall0 = time.monotonic()
        for pids in self.groups.values():
            for pid in pids:
                c = self._cpu(pid)
                if c is not None:
                    self.t0[pid] = c

    def stop(self, late: dict[str, list[int]] | None = None) -> dict[str, Any]:
        wall = time.monotonic() - self.wall0
        out: dict[str, Any] = {"wall_s": round(wall, 2)}
        for name, pids in self.groups.items():
            all_pids = set(pids) | set((late or {}).get(name, []))
            total = 0.0
            for pid in all_pids:
                c = self._cpu(pid)
                if c is not None:
                    total += c - self.t0.get(pid, 0.0 if pid not in pids else c)
            out[name] = {"cpu_s": round(total, 2), "cores": round(total / wall, 2)}
        return out


def redis_pids() -> list[int]:
    return [
        p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "") == "redis-server"
    ]


# --- one measured run -----------------------------------------------------------------------


def analyse(
    data: RunData,
    offsets: list[int],
    burst: tuple[float, float] | None,
    warm_s: float = WARM_S,
) -> dict[str, Any]:
    ms = 1e-6
    cutoff = data.start_ns + int(warm_s * 1e9)
    accepted = [s for s in data.sent if s[3] is not None]
    k = len(data.recv)
    delivered = [sum(1 for s in accepted if s[3] in r) for r in data.recv]
    measured = [s for s in accepted if s[0] >= cutoff]
    ingest = [(s[1] - s[0]) * ms for s in measured]
    e2e0, worst = [], []
    series = []  # (t since start s, ingest ms, e2e to console 0 ms)
    for s in accepted:
        iid = s[3]
        assert iid is not None
        t_rel = (s[0] - data.start_ns) / 1e9
        r0 = data.recv[0].get(iid) if k else None
        e = (r0 - s[0]) * ms if r0 else None
        series.append((round(t_rel, 4), round((s[1] - s[0]) * ms, 3), e and round(e, 3)))
        if s[0] < cutoff or not k:
            continue
        if r0:
            e2e0.append((r0 - s[0]) * ms)
        ts = [r[iid] for r in data.recv if iid in r]
        if len(ts) == k:
            worst.append((max(ts) - s[0]) * ms)
    per_sec: dict[int, dict[str, float]] = {}
    for t_rel, ing, e in series:
        sec = per_sec.setdefault(int(t_rel), {"sent": 0, "ingest_max_ms": 0.0, "e2e_max_ms": 0.0})
        sec["sent"] += 1
        sec["ingest_max_ms"] = max(sec["ingest_max_ms"], ing)
        if e is not None:
            sec["e2e_max_ms"] = max(sec["e2e_max_ms"], e)
    dur = (offsets[-1] / 1e9) if offsets else 0.0
    statuses: dict[str, int] = {}
    for s in data.sent:
        statuses[str(s[2])] = statuses.get(str(s[2]), 0) + 1
    out: dict[str, Any] = {
        "sent": len(data.sent),
        "accepted": len(accepted),
        "delivered_per_console": delivered,
        "all_delivered": bool(k) and all(d == len(accepted) for d in delivered),
        #: new incidents (201); a 200 is a replay or a report folded into an open alert
        "created": sum(1 for s in data.sent if s[2] == 201),
        #: accepted but not at every console by the end of the drain window (20 s)
        "missing_at_end": len(accepted) - min(delivered) if delivered else None,
        "errors": len(data.errors),
        "status_counts": statuses,
        "server_errors_5xx": sum(1 for s in data.sent if s[2] >= 500),
        "sample_errors": data.errors[:5],
        "missing_sample": [
            {"index": i, "incident_id": s[3], "t_s": round((s[0] - data.start_ns) / 1e9, 3)}
            for i, s in enumerate(data.sent)
            if s[3] is not None and k and any(s[3] not in r for r in data.recv)
        ][:5],
        "console_failures": data.console_failures[:5],
        "throughput_per_s": round(len(accepted) / dur, 1) if dur else None,
        "drain_s": data.drain_s,
        "http_connections_used": data.conns_opened,
        "stale_connection_retries": data.stale_retries,
        "ingest_ms": stats(ingest),
        "sos_to_console_ms": stats(e2e0),
        "sos_to_slowest_console_ms": stats(worst),
        "per_second": {str(k_): v for k_, v in sorted(per_sec.items())},
        "series": series,
    }
    if burst is not None:
        out["burst"] = _recovery(series, burst, out["sos_to_console_ms"])
    return out


def _recovery(
    series: list[tuple[float, float, float | None]],
    burst: tuple[float, float],
    overall: dict[str, Any],
) -> dict[str, Any]:
    b0, b1 = burst
    before = sorted(e for t, _, e in series if e is not None and WARM_S <= t < b0)
    base_p99 = openloop.pct(before, 99) or 0.0
    threshold = max(3 * base_p99, 20.0)
    late = [t for t, _, e in series if t >= b1 and (e is None or e > threshold)]
    during = [e for t, _, e in series if b0 <= t < b1 and e is not None]
    return {
        "window_s": [b0, b1],
        "pre_burst_p99_ms": base_p99,
        "recovery_threshold_ms": threshold,
        #: scheduled time after the burst's end of the last SOS still above the threshold
        "recovered_after_s": round(max(late) - b1, 2) if late else 0.0,
        "during_burst_ms": stats(during),
    }


async def measure(
    target: openloop.Target,
    segments: list[tuple[float, float]],
    cpu_groups: dict[str, list[int]],
    burst: tuple[float, float] | None = None,
    refresh: Any = None,
    spy_dir: Path | None = None,
    warmup_s: float = 2.0,
) -> dict[str, Any]:
    offsets = schedule(segments)
    if warmup_s > 0:  # connections, caches and plans; discarded
        await openloop.run(target, schedule([(20, warmup_s)]), drain_timeout_s=5)
    gc.collect()
    gc.disable()
    meter = CpuMeter(cpu_groups)
    spies = _start_py_spy(spy_dir, cpu_groups, offsets) if spy_dir else []
    meter.start()
    try:
        data = await openloop.run(target, offsets)
    finally:
        gc.enable()
        for spy in spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
            if spy.poll() is None:
                spy.kill()
                spy.wait(5)
    late = await refresh() if refresh else None
    cpu = meter.stop(late)
    result = analyse(data, offsets, burst)
    result["cpu"] = cpu
    # CPU per SOS is the figure the other helpers' load on this shared machine disturbs least.
    n = max(1, result["accepted"])
    per = {k: round(v["cpu_s"] * 1000 / n, 3) for k, v in cpu.items() if k != "wall_s"}
    per["service_total"] = round(
        sum(v for k, v in per.items() if k in ("api", "dispatchers", "postgres_backends")), 3
    )
    result["cpu_ms_per_sos"] = per
    result["segments"] = segments
    return result


def _start_py_spy(
    spy_dir: Path, groups: dict[str, list[int]], offsets: list[int]
) -> list[subprocess.Popen[bytes]]:
    """Sample the API workers and dispatchers for the length of the run (collapsed stacks)."""
    spy_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "py-spy"
    dur = max(1, int(offsets[-1] / 1e9) if offsets else 1)
    out = []
    for group in ("api", "dispatchers"):
        for pid in groups.get(group, []):
            out.append(
                subprocess.Popen(
                    [str(exe), "record", "--pid", str(pid), "--duration", str(dur), "--rate",
                     "200", "--format", "raw", "--nonblocking", "-o",
                     str(spy_dir / f"{group}-{pid}.txt")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
    time.sleep(0.5)
    return out


# --- profiles -------------------------------------------------------------------------------


def profiles(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    r, d = args.rate, args.duration
    lo, hi = args.burst_low, args.burst_high
    pre, width, post = 10.0, args.burst_s, 15.0
    return {
        "steady": {"segments": [(r, d)], "consoles": args.consoles},
        "burst": {
            "segments": [(lo, pre), (hi, width), (lo, post)],
            "burst": (pre, pre + width),
            "consoles": args.burst_consoles,
        },
        "smoke": {"segments": [(args.smoke_rate, args.smoke_s)], "consoles": 2},
    }


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


def _target(
    which: str, args: argparse.Namespace, env: dict[str, str], creds: dict[str, Any] | None
) -> Callable[[int], openloop.Target]:
    def target(consoles: int) -> openloop.Target:
        if which == "ansim":
            assert creds is not None
            return openloop.ours(
                HOST, args.port, creds["member_tokens"], creds["console_tokens"][:consoles]
            )
        return openloop.ceiling(
            HOST, int(env["CEILING_API_PORT"]), int(env["CEILING_DISPATCH_PORT"]), consoles
        )

    return target


def _db_url(which: str, args: argparse.Namespace, env: dict[str, str]) -> str:
    return args.db_url if which == "ansim" else env["CEILING_DSN"]


async def _start(
    which: str, args: argparse.Namespace, env: dict[str, str], logdir: Path
) -> tuple[Stack, Callable[[], Awaitable[dict[str, list[int]]]]]:
    """A freshly started stack on an empty incident log and stream (a backlog left by one
    profile must not leak into the next), and how to find its processes."""
    redis_url = env["REDIS_URL"] if which == "ansim" else env["CEILING_REDIS"]
    dbname = args.db_url.rsplit("/", 1)[1] if which == "ansim" else "ceiling"
    db_url = _db_url(which, args, env)
    await flush_redis(redis_url)
    if which == "ansim":  # the ceiling's start truncates its own table
        await clear_incidents(db_url, ceiling=False)
    await checkpoint(args.db_url)
    t0 = time.monotonic()
    stack = start_ours(args, env, logdir) if which == "ansim" else start_ceiling(args, env, logdir)
    print(f"[{which}] up in {time.monotonic() - t0:.1f}s", flush=True)

    async def groups() -> dict[str, list[int]]:
        return {
            "api": stack.pids("api"),
            "dispatchers": stack.pids("dispatcher"),
            "postgres_backends": await backend_pids(db_url, dbname),
            "redis_shared": redis_pids(),
            "load_generator": [os.getpid()],
        }

    return stack, groups


def _stop(which: str, stack: Stack) -> None:
    t0 = time.monotonic()
    stack.stop()
    print(f"[{which}] stopped in {time.monotonic() - t0:.1f}s", flush=True)


async def run_target(
    which: str,
    args: argparse.Namespace,
    env: dict[str, str],
    logdir: Path,
    creds: dict[str, Any] | None,
    name: str,
) -> dict[str, Any]:
    """Run one profile (not the sweep) against one pipeline, on a freshly started stack."""
    prof = profiles(args)
    target = _target(which, args, env, creds)
    stack, groups = await _start(which, args, env, logdir)
    try:
        if name in prof:
            p = prof[name]
            print(f"[{which}] {name}: {p['segments']} consoles={p['consoles']}", flush=True)
            res = await measure(
                target(p["consoles"]),
                p["segments"],
                await groups(),
                p.get("burst"),
                groups,
                (args.out_dir / f"pyspy-{name}") if args.py_spy and which == "ansim" else None,
                args.warmup_s,
            )
        else:
            assert name == "idle", name
            print(f"[{which}] idle: {args.idle_n} single SOS one at a time", flush=True)
            t = target(args.consoles_idle)
            await openloop.run(t, schedule([(20, 1)]), drain_timeout_s=5)
            data = await openloop.sequential(t, args.idle_n, gap_s=0.02)
            res = analyse(data, [int(i * 0.02e9) for i in range(args.idle_n)], None, 0.0)
        _print_one(which, name, res)
        stack.check_alive()
    finally:
        _stop(which, stack)
    return res


@dataclass
class _Sweeper:
    which: str
    target: Callable[[int], openloop.Target]
    groups: Callable[[], Awaitable[dict[str, list[int]]]]
    db_url: str
    best: float | None = None
    failed: bool = False


async def run_sweep(
    args: argparse.Namespace,
    envs: dict[str, dict[str, str]],
    logdir: Path,
    creds: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """The sweep, ``--sweep-repeats`` times over, with every selected pipeline up at once and
    taking turns at each rate (who goes first alternates from rate to rate): the machine's
    speed drifts by tens of percent within minutes, and side by side both pipelines meet the
    same drift. A stack left idle while the other is measured costs under 1% of a core."""
    stacks: dict[str, Stack] = {}
    sweepers = []
    try:
        for which, env in envs.items():
            stack, groups = await _start(which, args, env, logdir)
            stacks[which] = stack
            sweepers.append(
                _Sweeper(which, _target(which, args, env, creds), groups, _db_url(which, args, env))
            )
        runs: dict[str, list[dict[str, Any]]] = {w: [] for w in envs}
        for repeat in range(args.sweep_repeats):
            for s in sweepers:
                s.best, s.failed = None, False
            steps = await _sweep_once(args, sweepers, repeat)
            for s in sweepers:
                runs[s.which].append(
                    {"best_rate": s.best, "steps": [x for x in steps if x["which"] == s.which]}
                )
            print(f"sweep {repeat + 1}: " + ", ".join(f"{s.which} {s.best}/s" for s in sweepers))
            for stack in stacks.values():
                stack.check_alive()
    finally:
        for which, stack in stacks.items():
            _stop(which, stack)
    return {
        which: {
            "best_rate": statistics.median_low([r["best_rate"] or 0 for r in rs]) or None,
            "best_rates": [r["best_rate"] for r in rs],
            "runs": rs,
        }
        for which, rs in runs.items()
    }


async def _sweep_once(
    args: argparse.Namespace, sweepers: list[_Sweeper], repeat: int
) -> list[dict[str, Any]]:
    """Steps up until a rate fails twice in a row, for each pipeline: on a shared machine one
    stall can fail a step that holds (a rate passed on its second try is marked ``retried``)."""
    steps = []
    for i, rate in enumerate(args.sweep_rates):
        live = [s for s in sweepers if not s.failed]
        if not live:
            break
        for s in live if i % 2 == 0 else live[::-1]:
            for attempt in (1, 2):
                print(f"[{s.which}] sweep {rate}/s for {args.sweep_s}s (try {attempt})", flush=True)
                # members reused from the step before must have no open alert
                await clear_incidents(s.db_url, ceiling=s.which == "ceiling")
                await checkpoint(args.db_url)
                res = await measure(
                    s.target(args.consoles_sweep), [(rate, args.sweep_s)], await s.groups()
                )
                ok = (
                    res["errors"] == 0
                    and res["all_delivered"]
                    and (res["sos_to_slowest_console_ms"]["p99"] or 1e9) <= E2E_TARGET_MS
                )
                res.pop("series")
                steps.append(
                    {"which": s.which, "repeat": repeat, "rate": rate, "ok": ok,
                     "retried": attempt > 1, **res}
                )  # fmt: skip
                _print_one(s.which, f"sweep@{rate}", res)
                if ok:
                    break
            if ok:
                s.best = rate
            else:
                s.failed = True
    return steps


def _fmt(s: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "   -   " if v is None else f"{v:7.2f}"

    return f"p50={f(s['p50'])} p95={f(s['p95'])} p99={f(s['p99'])} max={f(s['max'])} ms"


def _print_one(which: str, name: str, r: dict[str, Any]) -> None:
    print(
        f"  [{which}/{name}] sent={r['sent']} accepted={r['accepted']} "
        f"delivered={r['delivered_per_console']} errors={r['errors']} drain={r['drain_s']}s"
        f" stale_connection_retries={r['stale_connection_retries']}"
    )
    print(f"    ingest         {_fmt(r['ingest_ms'])}")
    print(f"    SOS->console   {_fmt(r['sos_to_console_ms'])}")
    print(f"    SOS->slowest   {_fmt(r['sos_to_slowest_console_ms'])}")
    if "cpu" in r:
        print(
            f"    cpu (cores)    { {k: v['cores'] for k, v in r['cpu'].items() if k != 'wall_s'} }"
        )
    if "cpu_ms_per_sos" in r:
        print(f"    cpu ms per SOS {r['cpu_ms_per_sos']}")
    if r["sample_errors"] or r["console_failures"]:
        print(f"    errors: {r['sample_errors']} {r['console_failures']}")
    if "burst" in r:
        print(f"    burst          {r['burst']}", flush=True)


# --- report ---------------------------------------------------------------------------------


def ratios(ours: dict[str, Any], ceil: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, r in ours.items():
        c = ceil.get(name)
        if c is None:
            continue
        if name == "sweep":
            each = [
                round(a / b, 2) if a and b else None
                for a, b in zip(r["best_rates"], c["best_rates"], strict=True)
            ]
            out["sweep_best_rate_each"] = each
            known = [x for x in each if x is not None]
            if known:
                out["sweep_best_rate"] = statistics.median(known)
            continue
        rr: dict[str, Any] = {}
        for metric in ("ingest_ms", "sos_to_console_ms", "sos_to_slowest_console_ms"):
            rr[metric] = {
                p: round(r[metric][p] / c[metric][p], 2)
                for p in ("p50", "p95", "p99", "max")
                if r[metric][p] and c[metric][p]
            }
        if "cpu_ms_per_sos" in r and "cpu_ms_per_sos" in c:
            rr["cpu_ms_per_sos"] = {
                k: round(v / c["cpu_ms_per_sos"][k], 2)
                for k, v in r["cpu_ms_per_sos"].items()
                if c["cpu_ms_per_sos"].get(k)
            }
        out[name] = rr
    return out


def plot(results: dict[str, Any], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for ax, which in zip(axes, ("ansim", "ceiling"), strict=True):
        r = results.get(which, {}).get(name)
        if not r:
            ax.set_visible(False)
            continue
        t = [s[0] for s in r["series"]]
        ax.scatter(t, [s[1] for s in r["series"]], s=2, alpha=0.4, label="ingest (201)")
        ax.scatter(
            [s[0] for s in r["series"] if s[2] is not None],
            [s[2] for s in r["series"] if s[2] is not None],
            s=2,
            alpha=0.4,
            label="SOS -> console",
        )
        if "burst" in r:
            b0, b1 = r["burst"]["window_s"]
            ax.axvspan(b0, b1, color="red", alpha=0.12, label="burst")
        ax.axhline(E2E_TARGET_MS, color="grey", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("ms from scheduled send")
        ax.set_title(f"{which}: {name} {r['segments']}")
        ax.legend(loc="upper right", markerscale=4)
    axes[-1].set_xlabel("scheduled send time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(results: dict[str, Any]) -> None:
    print("\n=== ansim vs ceiling (ratio = ansim / ceiling; latency: lower is better) ===")
    o, c, rt = results.get("ansim", {}), results.get("ceiling", {}), results.get("ratios", {})
    for name in ("idle", "steady", "burst", "smoke"):
        if name not in o:
            continue
        print(f"{name}:")
        for metric in ("ingest_ms", "sos_to_console_ms", "sos_to_slowest_console_ms"):
            line = f"  {metric:27s} ansim {_fmt(o[name][metric])}"
            if name in c:
                line += f" | ceiling p99={c[name][metric]['p99']} | ratio {rt[name][metric]}"
            print(line)
        print(
            f"  counts sent/accepted/delivered: {o[name]['sent']}/{o[name]['accepted']}/"
            f"{o[name]['delivered_per_console']} errors={o[name]['errors']} "
            f"5xx={o[name]['server_errors_5xx']}"
        )
        if "cpu_ms_per_sos" in o[name]:
            line = f"  cpu ms per SOS: ansim {o[name]['cpu_ms_per_sos']}"
            if name in c:
                line += f" | ceiling {c[name]['cpu_ms_per_sos']}"
            print(line)
        if "burst" in o[name]:
            print(f"  burst recovery: ansim {o[name]['burst']['recovered_after_s']} s", end="")
            if name in c:
                print(f", ceiling {c[name]['burst']['recovered_after_s']} s", end="")
            print()
    if "sweep" in o:
        print(
            f"sweep: best rate with p99<= {E2E_TARGET_MS} ms: ansim {o['sweep']['best_rates']}"
            + (f", ceiling {c['sweep']['best_rates']}" if "sweep" in c else "")
            + (
                f"; ratio {rt['sweep_best_rate_each']}, median {rt.get('sweep_best_rate')}"
                if "sweep_best_rate_each" in rt
                else ""
            )
        )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    p.add_argument(
        "--profile",
        action="append",
        choices=["all", "idle", "steady", "burst", "sweep", "smoke"],
        help="repeatable; default all (idle, steady, burst, sweep)",
    )
    p.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/ansim_bench")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--dispatchers", type=int, default=1)
    p.add_argument("--places", type=int, default=50_000)
    p.add_argument(
        "--members", type=int, default=20_000, help="one per SOS in a run (see openloop.ours)"
    )
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--consoles", type=int, default=50)
    p.add_argument("--burst-low", type=float, default=100)
    p.add_argument("--burst-high", type=float, default=1000)
    p.add_argument("--burst-s", type=float, default=5)
    p.add_argument("--burst-consoles", type=int, default=5)
    p.add_argument("--consoles-idle", type=int, default=5)
    p.add_argument("--consoles-sweep", type=int, default=5)
    p.add_argument("--idle-n", type=int, default=200)
    p.add_argument("--sweep-rates", type=lambda s: [float(x) for x in s.split(",")],
                   default=[100, 200, 300, 450, 600, 800, 1000, 1200, 1400])  # fmt: skip
    p.add_argument("--sweep-s", type=float, default=10)
    p.add_argument("--sweep-repeats", type=int, default=3, help="whole sweeps, one after the other")
    p.add_argument("--warmup-s", type=float, default=2.0, help="20/s before each run, discarded")
    p.add_argument("--smoke-rate", type=float, default=20)
    p.add_argument("--smoke-s", type=float, default=3)
    p.add_argument("--no-ceiling", action="store_true", help="measure our stack only")
    p.add_argument("--no-ansim", action="store_true", help="measure the ceiling only")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for our processes, e.g. ANSIM_DISPATCH_CONCURRENCY=64",
    )
    p.add_argument(
        "--seed-only",
        type=Path,
        metavar="CREDENTIALS_JSON",
        help="migrate and seed, write the credentials for Locust there, and exit",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--py-spy", action="store_true", help="sample our API and dispatchers (collapsed stacks)"
    )
    p.add_argument("--out", type=Path, default=None, help="default artifacts/bench/<time>")
    a = p.parse_args(argv)
    chosen = a.profile or ["all"]
    a.todo = ["idle", "steady", "burst", "sweep"] if "all" in chosen else chosen
    return a


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out = args.out or ROOT / "artifacts" / "bench" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    args.out_dir = out
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": args.db_url,
            "REDIS_URL": args.redis_url,
            "ANSIM_ENVIRONMENT": "development",
            # No acknowledging consoles in the measured runs: without this, every unacknowledged
            # SOS escalates after 15 s and the run measures escalations too.
            "ANSIM_ACK_DEADLINE_S": "3600",
            # A console socket closed by the client is noticed only at the next ping (the
            # server's _live loop); a short interval lets the API shut down promptly.
            "ANSIM_CONSOLE_PING_S": "2",
        }
    )
    env.update(kv.split("=", 1) for kv in args.env)
    env.pop("ANSIM_DATABASE_URL", None)
    env.pop("ANSIM_REDIS_URL", None)
    await prepare_database(args.db_url, env)
    consoles = max(args.consoles, args.burst_consoles, args.consoles_idle, args.consoles_sweep)
    if "smoke" in args.todo:
        consoles = max(consoles, 2)
    creds = await seed(args.db_url, places=args.places, members=args.members, consoles=consoles)
    if args.seed_only:
        args.seed_only.parent.mkdir(parents=True, exist_ok=True)
        args.seed_only.write_text(json.dumps(creds, indent=1))
        print(f"seeded {args.db_url}; credentials in {args.seed_only}")
        return {"ansim": {}}
    results: dict[str, Any] = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("todo", "out_dir")
        },
    }
    cenv = dict(os.environ)
    cenv.update(
        {
            "CEILING_DSN": args.db_url.rsplit("/", 1)[0] + "/ceiling",
            "CEILING_REDIS": args.redis_url,
            "CEILING_API_PORT": "8100",
            "CEILING_DISPATCH_PORT": "8101",
        }
    )
    results["ansim"], results["ceiling"] = {}, {}
    envs = {k: v for k, v in (("ansim", env), ("ceiling", cenv)) if not getattr(args, f"no_{k}")}
    # Profile by profile, ours then the ceiling's: the two measurements of a profile are minutes
    # apart at most, so a change in the machine's other load affects both (the sweep's steps
    # take turns).
    for name in args.todo:
        if name == "sweep":
            for which, res in (await run_sweep(args, envs, logdir, creds)).items():
                results[which]["sweep"] = res
            continue
        for which, e in envs.items():
            results[which][name] = await run_target(which, args, e, logdir, creds, name)
    if not args.no_ceiling and not args.no_ansim:
        results["ratios"] = ratios(results["ansim"], results["ceiling"])
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if not args.no_plot:
        for name in ("steady", "burst", "smoke"):
            if name in results["ansim"]:
                plot(results, out / f"{name}.png", name)
    summary(results)
    print(f"\nresults: {out / 'results.json'}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvloop

    results = uvloop.run(main_async(args))
    ok = all(
        r.get("all_delivered") and not r.get("errors")
        for name, r in results["ansim"].items()
        if name in ("steady", "burst", "smoke", "idle")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
