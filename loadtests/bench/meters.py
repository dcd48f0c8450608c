"""What a run costs: CPU seconds by group of processes, and optional py-spy samples."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil


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


def start_py_spy(
    spy_dir: Path, groups: dict[str, list[int]], offsets: list[int]
) -> list[subprocess.Popen[bytes]]:
    """Sample the API workers, console processes and dispatchers for the length of the run
    (collapsed stacks)."""
    spy_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "py-spy"
    dur = max(1, int(offsets[-1] / 1e9) if offsets else 1)
    out = []
    for group in ("api", "consoles", "dispatchers"):
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
