"""Credentials written by ``python -m loadtests.bench --seed-only PATH`` and small helpers."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parents[2] / "artifacts" / "bench" / "credentials.json"
# Seoul, the same box the harness and the ceiling use.
LAT0, LAT1, LON0, LON1 = 37.42, 37.70, 126.76, 127.18

_lock = threading.Lock()
_creds: dict[str, Any] | None = None
_counters: dict[str, itertools.count[int]] = {}


def creds() -> dict[str, Any]:
    global _creds
    with _lock:
        if _creds is None:
            path = Path(os.environ.get("ANSIM_LOADTEST_CREDENTIALS", DEFAULT))
            _creds = json.loads(path.read_text())
        return _creds


def take(kind: str) -> Any:
    """Hand out credentials round-robin so users spread over members, consoles, devices."""
    items = creds()[kind]
    with _lock:
        n = next(_counters.setdefault(kind, itertools.count()))
    return items[n % len(items)]


def point(rng: random.Random | None = None) -> tuple[float, float]:
    r = rng or random
    return r.uniform(LAT0, LAT1), r.uniform(LON0, LON1)
