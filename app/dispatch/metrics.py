"""Event metrics of the dispatch pipeline, and the dispatchers' (and relay's) own ``/metrics``.

Counted where they happen, in-process (no I/O): the commit→console latency (in the API when its
intake routed the SOS, in a dispatcher otherwise), acknowledgement times, escalations, gateway
sends and dead letters. They live in prometheus-client's default registry, so the API (which
imports them through the relay) exposes them too: with multiprocess mode its workers' values
are summed, and a dispatcher, which runs in its own process, serves its own on its own port
(``serve_metrics``). docs/operations.md lists them; no label carries personal data or a
position (channels, outcomes, reasons, levels, paths only).

A dispatcher must not share the API's ``PROMETHEUS_MULTIPROC_DIR``: the API's scrape would sum
its files in, and its values would be counted twice (``ansim serve`` starts its dispatchers
without it)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from app.dispatch.relay import OutboxRelay
    from app.dispatch.worker import Dispatcher

log = logging.getLogger(__name__)

COMMIT_TO_CONSOLE = Histogram(
    "ansim_commit_to_console_seconds",
    "A new incident's commit to its console message appended (in-process), by who appended it"
    " (intake: the API routed it; dispatcher)",
    ["path"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ACK_SECONDS = Histogram(
    "ansim_ack_seconds",
    "An incident's creation to its acknowledgement on a console",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
ESCALATIONS = Counter(
    "ansim_escalations",
    "Escalation steps, by the level reached (6+ beyond 5) and reason",
    ["level", "reason"],
)
GATEWAY_SENDS = Counter(
    "ansim_gateway_sends",
    "Attempts to send a notification through a gateway, by channel and outcome (sent; error:"
    " worth retrying; refused: final)",
    ["channel", "outcome"],
)
NOTIFICATIONS_GIVEN_UP = Counter(
    "ansim_notifications_given_up",
    "Notifications marked failed (deadline passed or refused), by channel",
    ["channel"],
)
for _path in ("intake", "dispatcher"):
    # Present at 0 from the first scrape: "no console message while SOS arrive" needs a series.
    COMMIT_TO_CONSOLE.labels(_path)
ESCALATIONS.labels("1", "ack_timeout")  # the first step, so rate() has a series from the start


def observe_commit_to_console(path: str, committed_at: float | None) -> None:
    """``committed_at``: the outbox row's transaction time (epoch seconds, PostgreSQL's clock)."""
    if committed_at is not None:
        COMMIT_TO_CONSOLE.labels(path).observe(max(0.0, time.time() - committed_at))


def count_escalation(level: int, reason: str) -> None:
    ESCALATIONS.labels(str(level) if level <= 5 else "6+", reason).inc()


def count_send(channel: str, *, ok: bool, retry: bool) -> None:
    GATEWAY_SENDS.labels(channel, "sent" if ok else "error" if retry else "refused").inc()


def preset_channels(channels: Iterable[str]) -> None:
    """Every channel's series at 0, so a failure ratio has a denominator from the start."""
    for channel in channels:
        NOTIFICATIONS_GIVEN_UP.labels(channel)
        for outcome in ("sent", "error", "refused"):
            GATEWAY_SENDS.labels(channel, outcome)


class StateCollector(Collector):
    """Gauges and counters read from a running object at scrape time (prometheus-client's
    server thread reads plain attributes: no lock, no I/O)."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return list(self._read())


def dispatcher_state(worker: Dispatcher) -> Iterable[Metric]:
    """A dispatcher's own counts, read at scrape time."""
    yield GaugeMetricFamily(
        "ansim_dispatcher_inflight",
        "Stream entries this dispatcher is handling now",
        value=len(worker.inflight),
    )
    entries = CounterMetricFamily(
        "ansim_dispatcher_entries",
        "Incidents-stream entries this dispatcher finished, by outcome (processed; failed: to be"
        " redelivered; dead_lettered: moved to the dead-letter stream)",
        labels=["outcome"],
    )
    entries.add_metric(["processed"], worker.processed)
    entries.add_metric(["failed"], worker.failed)
    entries.add_metric(["dead_lettered"], worker.dead_lettered)
    yield entries
    yield from relay_state(worker.relay)


def relay_state(relay: OutboxRelay) -> Iterable[Metric]:
    """An outbox relay's counts (each API process, dispatcher and ``ansim relay`` runs one)."""
    yield CounterMetricFamily(
        "ansim_relay_published",
        "Outbox rows this process published to the incidents stream",
        value=relay.stats.published,
    )
    yield CounterMetricFamily(
        "ansim_relay_failures",
        "Relay sweeps of this process that failed (Redis or PostgreSQL)",
        value=relay.stats.failures,
    )


def serve_metrics(port: int, host: str, state: Callable[[], Iterable[Metric]]) -> None:
    """This process's ``/metrics`` on ``host:port`` (prometheus-client's HTTP server, a daemon
    thread): the event metrics above, the process's own (CPU, memory, GC) and ``state``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning(
            "PROMETHEUS_MULTIPROC_DIR is set: it is for the API's workers; this process's"
            " metrics are then also summed into the API's scrape (counted twice). Unset it here."
        )
    REGISTRY.register(StateCollector(state))
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
