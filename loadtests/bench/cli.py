"""The command line: ``python -m loadtests.bench`` parses its options, prepares the database,
runs the chosen profiles on each pipeline and writes ``results.json``."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtests.bench import ROOT
from loadtests.bench.database import prepare_database, seed
from loadtests.bench.mass import run_mass
from loadtests.bench.report import plot, ratios, summary
from loadtests.bench.runs import run_sweep, run_target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    p.add_argument(
        "--profile",
        action="append",
        choices=["all", "idle", "steady", "burst", "sweep", "smoke", "mass"],
        help="repeatable; default all (idle, steady, burst, sweep); mass: ours only",
    )
    p.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/ansim_bench")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--ceiling-port", type=int, default=8100, help="its API; its dispatcher +1")
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--dispatchers", type=int, default=1)
    p.add_argument(
        "--console-procs",
        type=int,
        default=1,
        help="`ansim consoles` processes (on free ports; the consoles spread over them);"
        " 0: the API serves the consoles, as before issue 23",
    )
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
    p.add_argument("--open-incidents", type=int, default=10_000, help="mass: open incidents")
    p.add_argument("--mass-rate", type=float, default=200, help="mass: SOS per second")
    p.add_argument("--mass-s", type=float, default=15, help="mass: seconds at that rate")
    p.add_argument("--consoles-mass", type=int, default=20, help="mass: consoles during the run")
    p.add_argument("--mass-snapshots", type=int, default=5, help="mass: consoles timed connecting")
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
    if "mass" in args.todo:
        consoles = max(consoles, args.consoles_mass, args.mass_snapshots)
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
            "CEILING_API_PORT": str(args.ceiling_port),
            "CEILING_DISPATCH_PORT": str(args.ceiling_port + 1),
        }
    )
    results["ansim"], results["ceiling"] = {}, {}
    envs = {k: v for k, v in (("ansim", env), ("ceiling", cenv)) if not getattr(args, f"no_{k}")}
    # Profile by profile, ours then the ceiling's: the two measurements of a profile are minutes
    # apart at most, so a change in the machine's other load affects both (the sweep's steps
    # take turns).
    for name in args.todo:
        if name == "mass":
            if "ansim" in envs:
                results["ansim"]["mass"] = await run_mass(args, env, logdir, creds)
            continue
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
