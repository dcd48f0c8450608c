"""The benchmark harness runs end to end: a tiny open-loop rate for a few seconds through the
real stack (API worker, dispatcher, WebSocket consoles), and nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.config import Settings
from tests.conftest import needs_seoul_data
from tests.e2e.harness import free_port

pytestmark = needs_seoul_data

ROOT = Path(__file__).resolve().parents[2]


def _bench(settings: Settings, out: Path, *profile: str) -> dict[str, Any]:
    """Run the harness against our stack only, small; its results.json."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.bench",
            *profile,
            "--no-ceiling",
            "--no-plot",
            "--db-url",
            settings.asyncpg_dsn,
            "--redis-url",
            settings.redis_url,
            "--port",
            str(free_port()),
            "--places",
            "600",
            "--warmup-s",
            "0.5",
            "--members",
            "100",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())["ansim"]
    return results


def test_harness_delivers_every_accepted_sos_to_every_console(
    settings: Settings, migrated: None, tmp_path: Path
) -> None:
    smoke = _bench(
        settings, tmp_path, "--profile", "smoke", "--smoke-rate", "20", "--smoke-s", "3"
    )["smoke"]
    assert smoke["sent"] == 60
    assert smoke["accepted"] == smoke["created"] == smoke["sent"]
    assert smoke["delivered_per_console"] == [smoke["sent"]] * 2
    assert smoke["errors"] == 0 and smoke["server_errors_5xx"] == 0
    assert smoke["sos_to_console_ms"]["max"] is not None
    assert smoke["cpu"]["api"]["cpu_s"] > 0
    # The consoles were served by a console process of their own (`ansim consoles`).
    assert smoke["cpu"]["consoles"]["cpu_s"] > 0


def test_sweep_repeats_on_one_stack_and_reports_each_best_rate(
    settings: Settings, migrated: None, tmp_path: Path
) -> None:
    # The first 2 s of a step are ramp-up, left out of its percentiles: 3 s steps.
    # The second repeat reuses the members of the first: they must have no open alert left,
    # or every SOS would fold into one (a 200, not a 201) and the step would still pass.
    sweep = _bench(
        settings, tmp_path, "--profile", "sweep", "--sweep-rates", "10,20",
        "--sweep-s", "3", "--sweep-repeats", "2", "--consoles-sweep", "2",
    )["sweep"]  # fmt: skip
    assert sweep["best_rates"] == [20, 20] and sweep["best_rate"] == 20
    for run in sweep["runs"]:
        assert [(s["rate"], s["ok"]) for s in run["steps"]] == [(10, True), (20, True)]
        for step in run["steps"]:
            assert step["created"] == step["accepted"] == step["sent"] == step["rate"] * 3
            assert step["delivered_per_console"] == [step["sent"]] * 2
