"""Where the shared reference material lives: the Seoul open data and the ceiling benchmark.

It sits beside the project (``../shared``), never inside it. ``ANSIM_SHARED_DIR`` overrides;
``/work/shared`` is where these machines keep it when the checkout lives elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _find_shared() -> Path:
    candidates = [Path(p) for p in [os.environ.get("ANSIM_SHARED_DIR")] if p]
    candidates += [ROOT.parent / "shared", Path("/work/shared")]
    for candidate in candidates:
        if (candidate / "data" / "seoul").is_dir():
            return candidate.resolve()
    return candidates[0]


SHARED = _find_shared()
SEOUL = SHARED / "data" / "seoul"
CEILING = SHARED / "bench" / "ceiling"
