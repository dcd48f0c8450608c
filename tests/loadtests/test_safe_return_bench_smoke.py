"""The walk-home benchmark runs end to end, small: every seeded check is raised, the unanswered
walks become SOS incidents, and it reports lateness and CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_safe_return_bench_raises_every_check_and_reports(settings: Settings, tmp_path):
    out = tmp_path / "sr.json"
    db_url = settings.asyncpg_dsn + "_srbench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.safe_return_bench",
            "--sessions",
            "300",
            "--window-s",
            "3",
            "--lead-s",
            "2",
            "--escalate",
            "10",
            "--ask-s",
            "1",
            "--sweep-s",
            "0.2",
            "--database-url",
            db_url,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result = json.loads(out.read_text())
    assert result["checks_raised"] == 300
    assert result["escalated"] == 10
    assert result["check_lateness"]["p99_s"] < 5
    assert result["cpu_ms_per_session_minute"] > 0
