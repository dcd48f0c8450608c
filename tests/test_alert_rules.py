"""deploy/prometheus/alerts.yml: valid for Prometheus, unit-tested with promtool, and every
ansim_ metric it reads is one GET /metrics exposes (a rename cannot blind an alert)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.dispatch import metrics
from app.dispatch.worker import Dispatcher

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: it checks deploy/prometheus/alerts.yml. Install it with "
            "`scripts/setup.sh --browser` (Debian's prometheus package; its server is not started)"
        )
    return path


def run_promtool(*args: str, cwd: Path = RULES) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_are_valid() -> None:
    run_promtool("check", "rules", "alerts.yml")


def test_rules_unit_tests_pass() -> None:
    run_promtool("test", "rules", "alerts_test.yml")


async def exposed_metrics(client, pool, redis, settings) -> set[str]:
    """Every sample name the API's ``/metrics`` and a dispatcher's expose."""
    r = await client.get("/metrics")
    async with httpx.AsyncClient() as http:
        worker = Dispatcher(pool=pool, redis=redis, settings=settings, http=http, name="names")
        state = CollectorRegistry(auto_describe=False)
        state.register(metrics.StateCollector(lambda: metrics.dispatcher_state(worker)))
        dispatcher = (generate_latest(REGISTRY) + generate_latest(state)).decode()
    return {
        sample.name
        for text in (r.text, dispatcher)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_every_metric_the_rules_read_is_exposed(client, pool, redis, settings) -> None:
    lines = (RULES / "alerts.yml").read_text().splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\bansim_[a-z_]+", code))
    exposed = await exposed_metrics(client, pool, redis, settings)
    assert used and used <= exposed, used - exposed
