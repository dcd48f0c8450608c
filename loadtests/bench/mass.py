"""The mass-event profile (issue 23 §4): the same measurements on an empty incident log and with
``--open-incidents`` (10,000) open incidents, in one invocation, our stack only (the ceiling
keeps no open incidents to compare with).

- **Console snapshot**: ``--mass-snapshots`` consoles connect one after the other; the time from
  opening the socket to the snapshot frame read, and its size (a snapshot holds at most
  ``ANSIM_CONSOLE_SNAPSHOT_MAX`` incidents, the most urgent first).
- **Routing and linking per SOS**: an open-loop run at ``--mass-rate`` for ``--mass-s`` with
  ``--consoles-mass`` consoles: latency and CPU per SOS by process group. Half the open
  incidents are button presses received within the link window all over the city, so a phone
  SOS finds presses near it to link (about one within ``LINK_RADIUS_M``), as in a mass event.
- **Memory**: the resident size of the console processes and the API after the run.

The open incidents are written with one SQL statement (not through the API): random points over
the ceiling's box, their district by point-in-polygon, acknowledgement deadlines an hour away."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
from websockets.asyncio.client import connect as ws_connect

from loadtests import openloop
from loadtests.bench import HOST
from loadtests.bench.meters import CpuMeter
from loadtests.bench.report import print_one
from loadtests.bench.runs import _start, _stop, _target, measure
from loadtests.bench.stacks import Stack, console_ports

FILL_SQL = """
INSERT INTO incident (id, source, member_id, trigger, location, accuracy_m, district_id,
                      received_at, ack_deadline_at, emergency_id)
SELECT u.id, u.source, CASE WHEN u.source = 'app' THEN gen_random_uuid() END,
       CASE WHEN u.source = 'app' THEN 'sos' ELSE 'button' END,
       u.pt::geography, 10,
       (SELECT d.id FROM district d WHERE ST_Intersects(d.boundary, u.pt) LIMIT 1),
       now() - random() * interval '300 seconds', now() + interval '1 hour', u.id
FROM (
  SELECT gen_random_uuid() AS id,
         CASE WHEN g % 2 = 0 THEN 'app' ELSE 'button' END AS source,
         ST_SetSRID(ST_MakePoint($2::float8 + random() * ($3::float8 - $2::float8),
                                   $4::float8 + random() * ($5::float8 - $4::float8)), 4326) AS pt
  FROM generate_series(1, $1::int) AS g
) u
"""


async def fill(db_url: str, n: int) -> float:
    """``n`` open incidents; returns the seconds it took."""
    t0 = time.monotonic()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(FILL_SQL, n, openloop.LON0, openloop.LON1, openloop.LAT0, openloop.LAT1)
        await conn.execute("ANALYZE incident")
    finally:
        await conn.close()
    return round(time.monotonic() - t0, 2)


async def snapshot_times(urls: list[str]) -> dict[str, Any]:
    """Each console in turn: ms from opening its socket to its snapshot frame, and the frame."""
    times, sizes, counts = [], [], []
    for url in urls:
        t0 = time.monotonic_ns()
        async with ws_connect(url, max_size=None) as ws:
            async for raw in ws:
                msg = orjson.loads(raw)
                if msg.get("type") == "snapshot":
                    times.append((time.monotonic_ns() - t0) / 1e6)
                    sizes.append(len(raw))
                    counts.append(len(msg["incidents"]))
                    break
    return {
        "ms": openloop.stats(times),
        "bytes_max": max(sizes, default=0),
        "incidents_in_snapshot": max(counts, default=0),
    }


def rss_mb(stack: Stack) -> dict[str, float]:
    out = {}
    for group in ("api", "consoles"):
        total = 0
        for pid in stack.pids(group):
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        out[group] = round(total / 2**20, 1)
    return out


async def run_mass(
    args: argparse.Namespace, env: dict[str, str], logdir: Path, creds: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    target = _target("ansim", args, env, creds)
    ports = console_ports(args)
    tokens = creds["console_tokens"][: args.mass_snapshots]
    urls = [
        f"ws://{HOST}:{ports[i % len(ports)]}/v1/console/stream?token={t}&batch=true"
        for i, t in enumerate(tokens)
    ]
    for phase, n in (("empty", 0), ("open", args.open_incidents)):
        stack, groups = await _start("ansim", args, env, logdir)
        try:
            res: dict[str, Any] = {"open_incidents": n}
            if n:
                res["fill_s"] = await fill(args.db_url, n)
            res["rss_mb_before"] = rss_mb(stack)
            meter = CpuMeter(await groups())
            meter.start()
            res["snapshot"] = await snapshot_times(urls)
            # What a console's start costs (the runs below connect theirs too: it is in their
            # CPU per SOS, as in a real control room whose consoles connect during the event).
            spent = meter.stop()
            res["snapshot"]["cpu_ms_each"] = {
                k: round(v["cpu_s"] * 1000 / max(1, len(urls)), 1)
                for k, v in spent.items()
                if k in ("api", "consoles", "postgres_backends", "load_generator")
            }
            print(f"[ansim] mass/{phase}: snapshot {res['snapshot']}", flush=True)
            run = await measure(
                target(args.consoles_mass),
                [(args.mass_rate, args.mass_s)],
                await groups(),
                None,
                groups,
                None,
                args.warmup_s,
            )
            run.pop("series")
            conn = await asyncpg.connect(args.db_url)
            try:
                run["linked_sos"] = await conn.fetchval(
                    "SELECT count(DISTINCT incident_id) FROM incident_event WHERE kind = 'linked'"
                )
            finally:
                await conn.close()
            res["rss_mb_after"] = rss_mb(stack)
            res["run"] = run
            print_one("ansim", f"mass/{phase}", run)
            print(f"    linked {run['linked_sos']}, rss MB {res['rss_mb_after']}", flush=True)
            stack.check_alive()
        finally:
            _stop("ansim", stack)
        out[phase] = res
    empty, full = out["empty"]["run"], out["open"]["run"]
    out["ratios_open_to_empty"] = {
        "snapshot_ms_p50": _ratio(
            out["open"]["snapshot"]["ms"]["p50"], out["empty"]["snapshot"]["ms"]["p50"]
        ),
        "ingest_p99": _ratio(full["ingest_ms"]["p99"], empty["ingest_ms"]["p99"]),
        "slowest_console_p99": _ratio(
            full["sos_to_slowest_console_ms"]["p99"], empty["sos_to_slowest_console_ms"]["p99"]
        ),
        "cpu_ms_per_sos": {
            k: _ratio(v, empty["cpu_ms_per_sos"].get(k)) for k, v in full["cpu_ms_per_sos"].items()
        },
    }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None
