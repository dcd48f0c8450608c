"""The walk-home sweeper under a citywide evening: N active sessions (100,000 by default) whose
checks come due over a window, swept as the dispatchers sweep them (``sweeper.sweep`` every
``safe_return_sweep_s``, any number of sweepers side by side).

    python -m loadtests.safe_return_bench [--sessions 100000] [--window-s 180] [--sweepers 2]

It builds its own database (``<name>_srbench`` beside ``DATABASE_URL``'s, migrated to head),
seeds members and sessions in bulk (INSERT ... SELECT generate_series; the timer trigger sets
each session's ``next_check_at``), and measures:

- **lateness**: how long after its due time each check was raised ("Are you OK?" asked), and
  each SOS after her time to answer ran out (``--escalate`` sessions get a short ``ask_s``; the
  others are never escalated, so 100,000 incidents are not the point);
- **CPU per session-minute**: the sweepers' CPU (this process) plus that of the PostgreSQL
  backends serving them (read from /proc: PostgreSQL must run on this machine), divided by the
  sessions × the minutes they were monitored. The idle cost of a session whose check is not due
  is nothing: the sweep reads only the head of the due index.

Results are printed and written as JSON (``--out``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from app.config import Settings
from app.db import create_pool
from app.safe_return import sweeper
from app.security.passwords import hash_secret

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "ansim-srbench"
#: A box around central Seoul: one district, every destination inside it.
BOX = (126.90, 37.50, 127.10, 37.60)

_SEED_MEMBERS = """
INSERT INTO member (id, phone, name, pin_hash, duress_pin_hash, wrong_pin_count)
SELECT gen_random_uuid(), 'srbench-' || g, 'Walker ' || g, $2, $2, 0
FROM generate_series(1, $1) g
"""
# Each session: a destination in the box, a route, a position near the start; its arrival check
# due at a uniformly random moment of the window (the first one the trigger finds), the other
# checks later; ``ask_s`` long except for the ``$4`` sessions that are to escalate.
_SEED_SESSIONS = """
INSERT INTO safe_return_session (
  id, member_id, status, share_with_control_centre, destination, district_id, route,
  expected_arrival_at, arrival_due_at, geofence_m, no_position_s, corridor_m, off_route_s,
  stationary_m, stationary_s, low_battery_pct, ask_s, last_position, last_point_at, anchor,
  anchor_at, started_at)
SELECT gen_random_uuid(), m.id, 'active', m.n % 3 = 0, p.dest, $1, ST_MakeLine(
         p.start::geometry, p.dest::geometry)::geography,
       t.due - interval '10 minutes', t.due, 75, 7200, 150, 120, 30, 7200, 5,
       CASE WHEN m.n <= $4 THEN $5 ELSE 86400 END,
       p.start, now(), p.start, now(), now() - interval '10 minutes'
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM member) m,
LATERAL (SELECT ST_SetSRID(ST_MakePoint(126.91 + random() * 0.18, 37.51 + random() * 0.08),
                           4326)::geography AS dest,
                ST_SetSRID(ST_MakePoint(126.91 + random() * 0.18, 37.51 + random() * 0.08),
                           4326)::geography AS start, m.n AS k) p,
LATERAL (SELECT now() + make_interval(secs => $2 + random() * $3) AS due, p.k) t
"""


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_s": _pct(values, 0.50),
        "p99_s": _pct(values, 0.99),
        "max_s": max(values) if values else None,
        "mean_s": statistics.fmean(values) if values else None,
    }


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a local process, in seconds (0 if it is gone or not ours to read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backend_pids(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", APP_NAME
    )
    return [r["pid"] for r in rows]


async def prepare(db_url: str) -> None:
    name = db_url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(db_url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    env = {**os.environ, "DATABASE_URL": db_url, "ANSIM_DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "db", "upgrade", cwd=ROOT, env=env
    )
    if await proc.wait() != 0:
        raise SystemExit("migration failed")


async def seed(db_url: str, *, sessions: int, lead_s: float, window_s: float, escalate: int,
               ask_s: float) -> None:  # fmt: skip
    conn = await asyncpg.connect(db_url)
    try:
        district = await conn.fetchval(
            "INSERT INTO district (id, code, name, boundary) VALUES (gen_random_uuid(), 'SR',"
            " 'Bench', ST_Multi(ST_MakeEnvelope($1, $2, $3, $4, 4326))) RETURNING id",
            *BOX,
        )
        t0 = time.monotonic()
        await conn.execute(_SEED_MEMBERS, sessions, hash_secret("1234"))
        await conn.execute(_SEED_SESSIONS, district, lead_s, window_s, escalate, ask_s)
        await conn.execute("ANALYZE member; ANALYZE safe_return_session")
        print(f"[srbench] seeded {sessions} sessions in {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    db_url = args.database_url or base.asyncpg_dsn.rsplit("/", 1)[0] + "/ansim_srbench"
    await prepare(db_url)
    lead_s = args.lead_s
    await seed(
        db_url,
        sessions=args.sessions,
        lead_s=lead_s,
        window_s=args.window_s,
        escalate=args.escalate,
        ask_s=args.ask_s,
    )
    settings = base.model_copy(
        update={
            "database_url": db_url,
            "safe_return_sweep_s": args.sweep_s,
            "safe_return_sweep_batch": args.batch,
        }
    )
    pool = await create_pool(settings, application_name=APP_NAME, max_size=args.sweepers)
    try:
        pids = await _backend_pids(pool)
        stop = asyncio.Event()
        total = sweeper.SweepResult()
        sweeps: list[float] = []

        async def loop() -> None:
            # As ``Dispatcher._every`` runs it.
            while not stop.is_set():
                t = time.perf_counter()
                r = await sweeper.sweep(pool, settings)
                sweeps.append(time.perf_counter() - t)
                total.asked += r.asked
                total.escalated += r.escalated
                total.lateness_s.extend(r.lateness_s)
                total.escalation_lateness_s.extend(r.escalation_lateness_s)
                await asyncio.sleep(settings.safe_return_sweep_s)

        cpu0 = time.process_time()
        pg0 = sum(_proc_cpu_s(p) for p in pids)
        wall0 = time.monotonic()
        tasks = [asyncio.create_task(loop()) for _ in range(args.sweepers)]
        horizon = lead_s + args.window_s + (args.ask_s if args.escalate else 0) + 2 * args.sweep_s
        deadline = wall0 + horizon + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            done = total.asked >= args.sessions and total.escalated >= args.escalate
            if done and time.monotonic() - wall0 >= horizon:
                break
        stop.set()
        await asyncio.gather(*tasks)
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        pg = sum(_proc_cpu_s(p) for p in pids) - pg0
    finally:
        await pool.close()

    session_minutes = args.sessions * wall / 60
    result = {
        "sessions": args.sessions,
        "window_s": args.window_s,
        "sweepers": args.sweepers,
        "sweep_interval_s": args.sweep_s,
        "batch": args.batch,
        "wall_s": round(wall, 1),
        "checks_raised": total.asked,
        "escalated": total.escalated,
        "check_lateness": _summary(total.lateness_s),
        "escalation_lateness": _summary(total.escalation_lateness_s),
        "sweep_duration": _summary(sweeps),
        "cpu_s": {"sweepers": round(cpu, 2), "postgres": round(pg, 2)},
        "cpu_ms_per_session_minute": round(1000 * (cpu + pg) / session_minutes, 4),
        "cpu_ms_per_check": round(1000 * (cpu + pg) / max(1, total.asked + total.escalated), 3),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--window-s", type=float, default=180.0, help="checks come due over this")
    parser.add_argument(
        "--lead-s", type=float, default=30.0, help="after the seed starts, before the first is due"
    )
    parser.add_argument("--escalate", type=int, default=1000, help="sessions left unanswered")
    parser.add_argument("--ask-s", type=float, default=10.0, help="their time to answer")
    parser.add_argument("--sweepers", type=int, default=2, help="dispatchers sweeping")
    parser.add_argument("--sweep-s", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--out", type=Path, default=Path(".bench/safe_return.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
