"""The dispatchers' event metrics (app/dispatch/metrics.py), counted where they happen, against
real PostgreSQL and Redis; their exposition by a dispatcher process is in
tests/e2e/test_prometheus_scrape.py."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.dispatch import metrics, routing
from app.dispatch.gateways import Attempt
from app.dispatch.worker import Dispatcher
from app.incidents.store import TOPIC_UPDATED, NewIncident, insert_incident
from app.notifications.sender import Sender


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _incident(pool, make_member) -> uuid.UUID:
    member = await make_member()
    stored = await insert_incident(
        pool,
        NewIncident(
            source="app", trigger="sos", actor="t", member_id=member.id, lat=37.52, lon=126.92
        ),
    )
    return stored.id


async def test_an_overdue_incident_counts_one_escalation_by_level_and_reason(
    pool, settings, make_member
):
    incident_id = await _incident(pool, make_member)
    await pool.execute(
        "UPDATE incident SET ack_deadline_at = now() - interval '1 second' WHERE id = $1",
        incident_id,
    )
    before = sample("ansim_escalations_total", level="1", reason="ack_timeout")
    assert await routing.escalate_overdue(pool, settings) == 1
    assert sample("ansim_escalations_total", level="1", reason="ack_timeout") == before + 1
    assert await routing.escalate_overdue(pool, settings) == 0  # not due again yet
    assert sample("ansim_escalations_total", level="1", reason="ack_timeout") == before + 1
    metrics.count_escalation(9, "ack_timeout")  # the ladder's repeats share one series
    assert sample("ansim_escalations_total", level="6+", reason="ack_timeout") >= 1


async def test_the_acknowledgement_time_is_observed_once_per_acknowledgement(
    pool, redis, settings, make_member
):
    incident_id = await _incident(pool, make_member)
    received = await pool.fetchval("SELECT received_at FROM incident WHERE id = $1", incident_id)
    await pool.execute("UPDATE incident SET status = 'acknowledged' WHERE id = $1", incident_id)
    payload = {"incident_id": str(incident_id), "kind": "acknowledged"}
    outbox_id = await pool.fetchval(
        "INSERT INTO outbox (topic, incident_id, payload) VALUES ($1, $2, $3) RETURNING id",
        TOPIC_UPDATED,
        incident_id,
        payload,
    )
    entry = routing.Entry(
        outbox_id=outbox_id,
        topic=TOPIC_UPDATED,
        incident_id=incident_id,
        kind="acknowledged",
        payload=payload,
        committed_at=received.timestamp() + 42.0,
    )
    count, total = sample("ansim_ack_seconds_count"), sample("ansim_ack_seconds_sum")
    ctx = routing.Context(pool, redis, settings, {})
    await routing.handle(ctx, entry)
    await routing.handle(ctx, entry)  # a redelivery observes nothing
    assert sample("ansim_ack_seconds_count") == count + 1
    assert abs(sample("ansim_ack_seconds_sum") - total - 42.0) < 0.01
    assert sample("ansim_ack_seconds_bucket", le="60.0") >= 1


class _Failing:
    """A gateway that answers 503 (an adapter, not our database)."""

    channel = "sms"

    async def send(self, *, target: str, message: dict[str, Any], idempotency_key: str) -> Attempt:
        return Attempt(False, 503, "HTTP 503", retry=True)


async def test_gateway_sends_are_counted_by_channel_and_outcome(pool, settings, make_member):
    incident_id = await _incident(pool, make_member)
    await pool.execute(
        "INSERT INTO notification (incident_id, channel, target, message, dedupe_key,"
        " deadline_at) VALUES ($1, 'sms', 'staff:x', '{\"type\": \"page\"}', $2,"
        " now() + interval '1 hour')",
        incident_id,
        f"metrics-{incident_id}",
    )
    before = sample("ansim_gateway_sends_total", channel="sms", outcome="error")
    sender = Sender(pool=pool, settings=settings, gateways={"sms": _Failing()})
    assert sample("ansim_gateway_sends_total", channel="sms", outcome="sent") >= 0
    assert await sender.run_once() == 1
    assert sample("ansim_gateway_sends_total", channel="sms", outcome="error") == before + 1


async def test_a_dispatchers_exposition_has_its_state_and_no_personal_labels(pool, redis, settings):
    async with httpx.AsyncClient() as http:
        worker = Dispatcher(pool=pool, redis=redis, settings=settings, http=http, name="m1")
        state = CollectorRegistry(auto_describe=False)
        state.register(metrics.StateCollector(lambda: metrics.dispatcher_state(worker)))
        text = (generate_latest(REGISTRY) + generate_latest(state)).decode()
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("ansim_dispatcher_inflight", ())] == 0
    assert values[("ansim_dispatcher_entries_total", (("outcome", "processed"),))] == 0
    assert ("ansim_relay_published_total", ()) in values
    for channel in ("push", "sms"):
        assert ("ansim_gateway_sends_total", (("channel", channel), ("outcome", "sent"))) in values
    assert ("ansim_commit_to_console_seconds_count", (("path", "dispatcher"),)) in values
    allowed = {"source", "outcome", "path", "level", "reason", "channel", "le", "district"}
    for (name, labels), _value in values.items():
        if name.startswith("ansim_"):
            assert {k for k, _ in labels} <= allowed, name
