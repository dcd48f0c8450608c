"""One measured run: a profile's open-loop schedule against one stack, its analysis, and the
sweep with both pipelines taking turns."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests import openloop
from loadtests.bench import E2E_TARGET_MS, HOST, WARM_S
from loadtests.bench.database import backend_pids, checkpoint, clear_incidents, flush_redis
from loadtests.bench.meters import CpuMeter, redis_pids, start_py_spy
from loadtests.bench.report import print_one
from loadtests.bench.stacks import Stack, console_ports, start_ceiling, start_ours
from loadtests.openloop import RunData, schedule, stats


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
    spies = start_py_spy(spy_dir, cpu_groups, offsets) if spy_dir else []
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
    per["service_total"] = round(sum(v for k, v in per.items() if k in SERVICE), 3)
    result["cpu_ms_per_sos"] = per
    result["segments"] = segments
    return result


#: The processes of a pipeline (the load generator and the shared Redis aside).
SERVICE = ("api", "consoles", "dispatchers", "postgres_backends")


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


def _target(
    which: str, args: argparse.Namespace, env: dict[str, str], creds: dict[str, Any] | None
) -> Callable[[int], openloop.Target]:
    def target(consoles: int) -> openloop.Target:
        if which == "ansim":
            assert creds is not None
            return openloop.ours(
                HOST,
                args.port,
                creds["member_tokens"],
                creds["console_tokens"][:consoles],
                console_ports=console_ports(args),
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
            "consoles": stack.pids("consoles"),
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
        print_one(which, name, res)
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
                print_one(s.which, f"sweep@{rate}", res)
                if ok:
                    break
            if ok:
                s.best = rate
            else:
                s.failed = True
    return steps
