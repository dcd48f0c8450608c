"""Locust scenarios for Ansim: a realistic mix of phones, consoles, volunteers and buttons.

    python -m loadtests.bench --seed-only artifacts/bench/credentials.json   # once
    ansim serve & python -m app.dispatch.cli dispatcher &                     # the stack
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 -u 100 -r 20 -t 5m --headless
    ANSIM_LOADTEST_SHAPE=burst locust -f loadtests/locustfile.py --host ... --headless

The open-loop benchmark (latency from the scheduled send, beside the ceiling) is
``python -m loadtests.bench``; Locust is closed-loop and is for the mix and for soak runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
from locust import events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtests.scenarios.button import ButtonUser
from loadtests.scenarios.console import ConsoleUser
from loadtests.scenarios.phone import PhoneUser
from loadtests.scenarios.volunteer import VolunteerUser

__all__ = ["ButtonUser", "ConsoleUser", "PhoneUser", "VolunteerUser"]

if os.environ.get("ANSIM_LOADTEST_SHAPE") == "burst":
    from loadtests.scenarios.shapes import BurstShape

    __all__ += ["BurstShape"]


@events.init.add_listener
def _detect_features(environment, **_kwargs):
    """Buttons join the mix only when the service has the devices API (branch `devices`)."""
    host = environment.host or "http://127.0.0.1:8000"
    try:
        paths = httpx.get(f"{host}/openapi.json", timeout=5).json().get("paths", {})
    except Exception:
        paths = {}
    has_devices = any(p.startswith("/v1/devices/") for p in paths)
    if not has_devices:
        ButtonUser.weight = 0
        environment.user_classes = [u for u in environment.user_classes if u is not ButtonUser]
        environment.user_classes_by_name.pop("ButtonUser", None)
