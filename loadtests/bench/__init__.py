"""The benchmark harness: our stack beside the ceiling, same open-loop profile, same generator.

    python -m loadtests.bench [--profile all|steady|burst|idle|sweep|smoke] [options]

It creates and migrates its own database, seeds places (real Seoul safety houses and police
offices plus synthetic stores up to --places), members and city-wide dispatchers, starts N API
workers and M dispatchers, connects K WebSocket consoles, drives an open-loop arrival rate, and
then does the same against ../shared/bench/ceiling. Results: JSON and PNG under --out, and a
summary with our figures as ratios to the ceiling. See docs/performance.md.

The package: ``database`` (create, migrate, seed, empty), ``stacks`` (the processes under test),
``meters`` (CPU by process, py-spy), ``runs`` (one measured run, the sweep), ``report`` (ratios,
plots, summary) and ``cli`` (the options and the order of the runs).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
WARM_S = 2.0  # like the ceiling's probe: the first seconds (connection ramp-up) leave the stats
E2E_TARGET_MS = 100.0
