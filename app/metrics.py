"""Prometheus metrics of the API process (``GET /metrics``, docs/operations.md).

Two kinds:

- **Events** counted where they happen (an SOS accepted, the intake's latency): module-level
  counters and histograms, a few nanoseconds on the hot path and no I/O. With several uvicorn
  workers set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, emptied before the workers
  start) so each worker writes its values to files there and a scrape of any worker sums them
  all (prometheus-client's multiprocess mode); without it the process's own registry is served.
- **State** read at scrape time (outbox backlog, stream pending, dead letters, coverage,
  notifications): one query each, side by side and bounded by ``metrics_query_timeout_s``, so
  a scrape never holds a pooled connection long. The values are the same from every process
  (they come from PostgreSQL and Redis), except ``ansim_consoles_connected``: this process's.
  A gauge whose query failed or timed out is left out of that scrape, and
  ``ansim_metrics_scrape_errors`` says which source failed.

No label carries personal data or a position: only sources, outcomes, statuses, a source name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from app.config import Settings
from app.dispatch.coverage import read_watch

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "INTAKE_SECONDS", "SOS_ACCEPTED", "render", "sos_accepted"]

SOS_ACCEPTED = Counter(
    "ansim_sos_accepted",
    "Alerts accepted at intake, by source (app, button) and outcome (created, replayed, folded)",
    ["source", "outcome"],
)
INTAKE_SECONDS = Histogram(
    "ansim_intake_seconds",
    "Alert intake time in the handler, from the request read to the answer built, by source",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
for _source in ("app", "button"):
    # Present from the first scrape at 0, so rate() and "no SOS" alerts see a series.
    INTAKE_SECONDS.labels(_source)
    for _outcome in ("created", "replayed", "folded"):
        SOS_ACCEPTED.labels(_source, _outcome)

OPEN_STATUSES = ("new", "acknowledged", "responding", "on_scene")


def sos_accepted(source: str, *, created: bool, folded: bool, started: float) -> None:
    """Count one accepted alert and its intake time (``started``: ``time.perf_counter()``)."""
    outcome = "created" if created else "folded" if folded else "replayed"
    SOS_ACCEPTED.labels(source, outcome).inc()
    INTAKE_SECONDS.labels(source).observe(time.perf_counter() - started)


# --- scrape-time state ----------------------------------------------------------------------

_OUTBOX_SQL = """
SELECT count(*) AS backlog,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age
FROM outbox WHERE published_at IS NULL
"""
_DB_SQL = f"""
SELECT (SELECT count(*) FROM district) AS districts,
       (SELECT count(*) FROM district WHERE id <> ALL($1::uuid[])) AS without_console,
       (SELECT count(*) FROM incident
         WHERE unwatched_at IS NOT NULL AND status IN {OPEN_STATUSES!r}) AS unwatched,
       (SELECT count(*) FROM notification WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM notification WHERE status = 'failed') AS failed,
       (SELECT count(*) FROM device WHERE enabled AND offline_reported_at IS NOT NULL)
         AS devices_offline,
       (SELECT coalesce(array_agg(code ORDER BY code), '{{}}') FROM district) AS codes,
       (SELECT coalesce(array_agg(id ORDER BY code), '{{}}') FROM district) AS ids
"""


@dataclass
class Snapshot:
    """The state gauges of one scrape; a source that failed leaves its values out."""

    gauges: list[Metric] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def gauge(
        self, name: str, doc: str, value: float, labels: dict[str, str] | None = None
    ) -> None:
        family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
        family.add_metric(list((labels or {}).values()), value)
        self.gauges.append(family)


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


async def read_state(
    *, pool: asyncpg.Pool, redis: Redis, settings: Settings, consoles_here: int
) -> Snapshot:
    snap = Snapshot()
    snap.gauge(
        "ansim_consoles_connected",
        "Console sockets open on this API process",
        consoles_here,
        {"pid": str(os.getpid())},
    )

    async def outbox() -> None:
        row = await pool.fetchrow(_OUTBOX_SQL)
        assert row is not None
        snap.gauge("ansim_outbox_backlog", "Outbox rows not yet published", row["backlog"])
        snap.gauge(
            "ansim_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none)",
            row["oldest_age"],
        )

    async def database() -> None:
        watch = await read_watch(redis, settings)
        row = await pool.fetchrow(_DB_SQL, list(watch.districts))
        assert row is not None
        snap.gauge("ansim_districts", "Districts in the database", row["districts"])
        snap.gauge(
            "ansim_districts_without_console",
            "Districts with no open console of their own (city-wide consoles aside)",
            row["without_console"],
        )
        snap.gauge(
            "ansim_consoles_city_wide",
            "Open city-wide consoles, on every API process",
            watch.city_wide,
        )
        snap.gauge(
            "ansim_incidents_unwatched",
            "Open incidents flagged unwatched (no console at all had them)",
            row["unwatched"],
        )
        snap.gauge(
            "ansim_devices_offline",
            "Panic buttons enabled whose heartbeats stopped (reported offline, not back)",
            row["devices_offline"],
        )
        consoles = GaugeMetricFamily(
            "ansim_district_consoles",
            "Open consoles of each district, on every API process (0: unwatched by its own)",
            labels=["district"],
        )
        for code, district_id in zip(row["codes"], row["ids"], strict=True):
            consoles.add_metric([code], watch.districts.get(district_id, 0))
        snap.gauges.append(consoles)
        for status in ("pending", "failed"):
            snap.gauge(
                "ansim_notifications",
                "Notifications (pages, guardian messages) by status",
                row[status],
                {"status": status},
            )

    async def stream() -> None:
        pipe = redis.pipeline(transaction=False)
        pipe.xlen(settings.stream_incidents)
        pipe.xlen(settings.stream_dead_letter)
        length, dead = await pipe.execute()
        snap.gauge("ansim_stream_length", "Entries in the incidents stream", length)
        snap.gauge("ansim_dead_letters", "Entries in the dead-letter stream", dead)
        groups: list[dict[Any, Any]] = []
        if length:
            groups = await redis.xinfo_groups(settings.stream_incidents)
        pending = lag = 0
        for group in groups:
            name = group.get("name", group.get(b"name"))
            if (name.decode() if isinstance(name, bytes) else name) == settings.stream_group:
                pending = int(group.get("pending", group.get(b"pending")) or 0)
                lag = int(group.get("lag", group.get(b"lag")) or 0)
        snap.gauge(
            "ansim_stream_pending",
            "Entries delivered to a dispatcher and not yet acknowledged",
            pending,
        )
        snap.gauge("ansim_stream_lag", "Entries not yet delivered to any dispatcher", lag)

    async def bounded(source: str, job: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(job, settings.metrics_query_timeout_s)
        except Exception as exc:  # a scrape reports what it can
            log.warning("metrics: %s unavailable: %s", source, type(exc).__name__)
            snap.errors[source] = 1

    await asyncio.gather(
        bounded("outbox", outbox()), bounded("database", database()), bounded("redis", stream())
    )
    errors = GaugeMetricFamily(
        "ansim_metrics_scrape_errors",
        "1 when this scrape could not read a source (its gauges are missing)",
        labels=["source"],
    )
    for source in ("outbox", "database", "redis"):
        errors.add_metric([source], snap.errors.get(source, 0))
    snap.gauges.append(errors)
    return snap


def render(snapshot: Snapshot) -> bytes:
    """The exposition: the event metrics (every worker's in multiprocess mode), then the state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        events = CollectorRegistry()
        MultiProcessCollector(events)  # type: ignore[no-untyped-call]
    else:
        events = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(_Fixed(snapshot.gauges))
    return generate_latest(events) + generate_latest(state)
