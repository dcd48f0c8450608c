"""The burst profile: steady load, a step to many times that within a second, then back."""

from __future__ import annotations

import os

from locust import LoadTestShape


class BurstShape(LoadTestShape):
    """Users: BASE for PRE s, BASE*FACTOR for WIDTH s (spawned within a second), BASE for POST s.

    Environment: ANSIM_BURST_BASE (50), ANSIM_BURST_FACTOR (10), ANSIM_BURST_PRE_S (60),
    ANSIM_BURST_WIDTH_S (30), ANSIM_BURST_POST_S (90)."""

    base = int(os.environ.get("ANSIM_BURST_BASE", "50"))
    factor = int(os.environ.get("ANSIM_BURST_FACTOR", "10"))
    pre = float(os.environ.get("ANSIM_BURST_PRE_S", "60"))
    width = float(os.environ.get("ANSIM_BURST_WIDTH_S", "30"))
    post = float(os.environ.get("ANSIM_BURST_POST_S", "90"))

    def tick(self) -> tuple[int, float] | None:
        t: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if t < self.pre:
            return self.base, self.base
        if t < self.pre + self.width:
            peak = self.base * self.factor
            return peak, peak  # the whole step within a second
        if t < self.pre + self.width + self.post:
            return self.base, self.base * self.factor
        return None
