"""The benchmark harness runs end to end: a tiny open-loop rate for a few seconds through the
real stack (API worker, dispatcher, WebSocket consoles), and nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from tests.conftest import needs_seoul_data

pytestmark = needs_seoul_data

ROOT = Path(__file__).resolve().parents[2]
PORT = 8550  # this suite's port range is 8500-8599; the harness's default is 8500


def test_harness_delivers_every_accepted_sos_to_every_console(
    settings: Settings, migrated: None, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.bench",
            "--profile",
            "smoke",
            "--smoke-rate",
            "20",
            "--smoke-s",
            "3",
            "--no-ceiling",
            "--no-plot",
            "--db-url",
            settings.asyncpg_dsn,
            "--redis-url",
            settings.redis_url,
            "--port",
            str(PORT),
            "--places",
            "600",
            "--warmup-s",
            "0.5",
            "--members",
            "100",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    smoke = json.loads((tmp_path / "results.json").read_text())["ansim"]["smoke"]
    assert smoke["sent"] == 60
    assert smoke["accepted"] == smoke["created"] == smoke["sent"]
    assert smoke["delivered_per_console"] == [smoke["sent"]] * 2
    assert smoke["errors"] == 0 and smoke["server_errors_5xx"] == 0
    assert smoke["sos_to_console_ms"]["max"] is not None
    assert smoke["cpu"]["api"]["cpu_s"] > 0
