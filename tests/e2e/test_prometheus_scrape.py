"""A real scrape: Debian's Prometheus server scrapes a running API and a dispatcher on loopback,
and PromQL sees an SOS raised over HTTP move the counter and the dispatcher up.

Fails (does not skip) without ``/usr/bin/prometheus``: `scripts/setup.sh --browser` installs
Debian's ``prometheus`` package (its own service is left stopped)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_alerts import GANGNAM, sos
from tests.e2e.harness import free_port, stack_env, start_api, start_dispatcher

PROMETHEUS = "/usr/bin/prometheus"


def _prometheus_binary() -> str:
    path = PROMETHEUS if os.access(PROMETHEUS, os.X_OK) else shutil.which("prometheus")
    if path is None:
        pytest.fail(
            "the Prometheus server binary is missing (/usr/bin/prometheus): install Debian's "
            "prometheus package with `scripts/setup.sh --browser`"
        )
    return path


def _config(api_port: int, dispatcher_port: int) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: ansim-api
    static_configs:
      - targets: ["127.0.0.1:{api_port}"]
  - job_name: ansim-dispatcher
    static_configs:
      - targets: ["127.0.0.1:{dispatcher_port}"]
"""


@contextlib.contextmanager
def _prometheus(tmp: Path, config: str, port: int) -> Any:
    (tmp / "prometheus.yml").write_text(config)
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    popen = subprocess.Popen(
        [
            _prometheus_binary(),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield popen
    finally:
        if popen.poll() is None:
            os.kill(popen.pid, signal.SIGTERM)
            try:
                popen.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(popen.pid, signal.SIGKILL)
                popen.wait(5)
        log.close()


async def _query(http: httpx.AsyncClient, port: int, promql: str) -> list[dict[str, Any]]:
    r = await http.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql})
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _until(http: httpx.AsyncClient, port: int, promql: str, ok: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            result = await _query(http, port, promql)
            if ok(result):
                return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"{promql} within {within}s: last {result}")


def _value(result: list[dict[str, Any]]) -> float:
    return float(result[0]["value"][1]) if result else float("nan")


async def test_prometheus_scrapes_the_api_and_a_dispatcher_and_sees_the_sos_counter_move(
    migrated, settings, make_district, make_member, tmp_path
):
    binary = _prometheus_binary()
    api_port, dispatcher_port, prom_port = free_port(), free_port(), free_port()
    env = stack_env(redis_url=settings.redis_url, gateway_port=None)
    await make_district(*GANGNAM)
    member = await make_member()
    api = await asyncio.to_thread(start_api, api_port, env)
    dispatcher = start_dispatcher(
        f"scrape-{dispatcher_port}", {**env, "ANSIM_DISPATCHER_METRICS_PORT": str(dispatcher_port)}
    )
    created = 'sum(ansim_sos_accepted_total{job="ansim-api",outcome="created"})'
    try:
        with _prometheus(tmp_path, _config(api_port, dispatcher_port), prom_port) as prom:
            async with httpx.AsyncClient(timeout=5) as http:
                assert binary
                up = await _until(
                    http,
                    prom_port,
                    "up",
                    lambda r: len(r) == 2 and all(s["value"][1] == "1" for s in r),
                    within=30,
                )
                assert {s["metric"]["job"] for s in up} == {"ansim-api", "ansim-dispatcher"}
                before = _value(await _until(http, prom_port, created, bool, within=10))
                for _ in range(3):
                    r = await http.post(
                        f"http://127.0.0.1:{api_port}/v1/alerts", json=sos(), headers=member.headers
                    )
                    assert r.status_code in (200, 201), r.text
                after = await _until(
                    http, prom_port, created, lambda r: r and _value(r) >= before + 1, within=15
                )
                # (Her second and third reports fold into the first: one created.)
                assert _value(after) == before + 1
                # The intake routed it: its console message counted in-process.
                await _until(
                    http,
                    prom_port,
                    'sum(ansim_commit_to_console_seconds_count{job="ansim-api"})',
                    lambda r: r and _value(r) >= 1,
                    within=10,
                )
                # The dispatcher's own metrics: its process and its entry counts.
                dispatcher_up = await _query(http, prom_port, 'up{job="ansim-dispatcher"}')
                assert _value(dispatcher_up) == 1
                assert await _query(http, prom_port, "ansim_dispatcher_inflight")
                assert prom.poll() is None
    finally:
        dispatcher.stop()
        api.stop()
