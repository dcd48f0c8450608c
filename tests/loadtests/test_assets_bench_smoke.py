"""The assets benchmark runs end to end, small: 40,000 assets from the real files topped up,
lookups measured, and the SOS intake never reads the table (while the lookups do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from tests.conftest import needs_seoul_data

ROOT = Path(__file__).resolve().parents[2]


@needs_seoul_data
def test_the_assets_bench_measures_lookups_and_the_sos_never_reads_the_table(
    settings: Settings, tmp_path
):
    out = tmp_path / "assets.json"
    args = ["--lookups", "60", "--sos", "15", "--rounds", "1", "--radii", "300,2000"]
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.assets_bench", *args,
         "--database-url", settings.asyncpg_dsn + "_assetbench", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    result = json.loads(out.read_text())
    assert result["assets"] == 40_000 and result["real_assets"] > 36_000
    assert set(result["lookup"]) == {"300m", "2000m"}
    assert result["lookup"]["2000m"]["mean_within"] > result["lookup"]["300m"]["mean_within"] > 0
    assert result["endpoint"]["300m"]["count"] == 60
    sos = result["sos"]
    assert sos["public_asset_scans_during_sos"] == 0
    assert sos["public_asset_scans_during_10_lookups"] >= 10
