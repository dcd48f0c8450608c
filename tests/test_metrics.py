"""``GET /metrics`` (app/metrics.py, docs/operations.md) against real PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.dispatch.coverage import presence_key
from app.main import create_app
from tests.api.test_alerts import GANGNAM, JONGNO, sos
from tests.devices.helpers import make_device, send_signal

SOS_ACCEPTED = "ansim_sos_accepted_total"


async def scrape(client, headers=None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def accepted(values, source: str, outcome: str) -> float:
    return values[(SOS_ACCEPTED, (("outcome", outcome), ("source", source)))]


def gauge(values, name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


async def test_metrics_exposes_the_counters_and_the_histogram(client):
    values = await scrape(client)
    for source in ("app", "button"):
        for outcome in ("created", "replayed", "folded"):
            assert accepted(values, source, outcome) >= 0
        assert values[("ansim_intake_seconds_count", (("source", source),))] >= 0
    for source in ("outbox", "database", "redis"):
        assert gauge(values, "ansim_metrics_scrape_errors", source=source) == 0


async def test_an_sos_moves_the_counter_by_outcome(client, make_member, make_district):
    await make_district(*GANGNAM)
    before = await scrape(client)
    m = await make_member()
    first = sos()
    assert (await client.post("/v1/alerts", json=first, headers=m.headers)).status_code == 201
    assert (await client.post("/v1/alerts", json=first, headers=m.headers)).status_code == 200
    # A new report while her alert is open is joined to it.
    assert (await client.post("/v1/alerts", json=sos(), headers=m.headers)).status_code == 200
    after = await scrape(client)
    for outcome in ("created", "replayed", "folded"):
        assert accepted(after, "app", outcome) == accepted(before, "app", outcome) + 1, outcome
    count = ("ansim_intake_seconds_count", (("source", "app"),))
    assert after[count] == before[count] + 3
    assert accepted(after, "button", "created") == accepted(before, "button", "created")


async def test_a_panic_button_moves_the_counter_by_outcome(client, pool, make_district, make_place):
    await make_district(*GANGNAM)
    device = await make_device(pool, await make_place("GS25 Gangnam", 37.4981, 127.0279))
    before = await scrape(client)
    press = {"type": "panic", "signal_id": str(uuid.uuid4())}
    assert (await send_signal(client, device, press)).status_code == 201
    assert (await send_signal(client, device, press)).status_code == 200  # a retry
    again = {"type": "panic", "signal_id": str(uuid.uuid4())}
    assert (await send_signal(client, device, again)).status_code == 200  # joined to the open one
    # A heartbeat is no alert.
    assert (await send_signal(client, device, {"type": "heartbeat"})).status_code == 200
    after = await scrape(client)
    for outcome in ("created", "replayed", "folded"):
        assert accepted(after, "button", outcome) == accepted(before, "button", outcome) + 1, (
            outcome
        )
    count = ("ansim_intake_seconds_count", (("source", "button"),))
    assert after[count] == before[count] + 3
    assert accepted(after, "app", "created") == accepted(before, "app", "created")


async def test_state_gauges_reflect_seeded_state(
    app, client, pool, redis, settings, make_district, make_member
):
    gangnam = await make_district(*GANGNAM)
    await make_district(*JONGNO)
    # One console in Gangnam (presence is shared by every API process through Redis).
    await redis.zadd(presence_key(settings), {f"district:{gangnam} conn-1": time.time() + 60})
    # Two entries in the stream: one delivered and not acknowledged, one not yet delivered.
    await redis.xgroup_create(
        settings.stream_incidents, settings.stream_group, id="0", mkstream=True
    )
    await redis.xadd(settings.stream_incidents, {"n": "1"})
    await redis.xadd(settings.stream_incidents, {"n": "2"})
    await redis.xreadgroup(settings.stream_group, "c1", {settings.stream_incidents: ">"}, count=1)
    await redis.xadd(settings.stream_dead_letter, {"n": "x"})
    # An open incident that nobody watched, and its notifications: one pending, two failed.
    m = await make_member()
    r = await client.post("/v1/alerts", json=sos(), headers=m.headers)
    incident_id = uuid.UUID(r.json()["incident_id"])
    await pool.execute("UPDATE incident SET unwatched_at = now() WHERE id = $1", incident_id)
    for n, status in enumerate(("pending", "failed", "failed")):
        await pool.execute(
            "INSERT INTO notification (incident_id, channel, target, message, dedupe_key, status,"
            " next_attempt_at, deadline_at) VALUES ($1, 'sms', 'staff:x', '{}', $2, $3,"
            " now() + interval '1 hour', now() + interval '2 hours')",
            incident_id,
            f"metrics-{n}",
            status,
        )
    hub = app.state.console_hub
    queue = hub.subscribe()
    # An unpublished outbox row, 40 s old, then held locked so the relay (SKIP LOCKED) leaves it
    # (the metric's plain count still sees it).
    row_id = await pool.fetchval(
        "INSERT INTO outbox (topic, payload, created_at)"
        " VALUES ('test.metrics', '{}', now() - interval '40 seconds') RETURNING id"
    )
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", row_id)
            values = await scrape(client)
    finally:
        hub.unsubscribe(queue)

    assert gauge(values, "ansim_districts") == 2
    assert gauge(values, "ansim_districts_without_console") == 1
    assert gauge(values, "ansim_district_consoles", district=GANGNAM[0]) == 1
    assert gauge(values, "ansim_district_consoles", district=JONGNO[0]) == 0
    assert gauge(values, "ansim_devices_offline") == 0
    assert gauge(values, "ansim_consoles_city_wide") == 0
    assert gauge(values, "ansim_consoles_connected", pid=str(os.getpid())) == 1
    assert gauge(values, "ansim_stream_pending") == 1
    assert gauge(values, "ansim_stream_lag") >= 1
    assert gauge(values, "ansim_stream_length") >= 2
    assert gauge(values, "ansim_dead_letters") == 1
    assert gauge(values, "ansim_incidents_unwatched") == 1
    assert gauge(values, "ansim_notifications", status="pending") == 1
    assert gauge(values, "ansim_notifications", status="failed") == 2
    assert gauge(values, "ansim_outbox_backlog") >= 1
    assert gauge(values, "ansim_outbox_oldest_age_seconds") >= 40


async def test_metrics_token_when_set(settings, migrated):
    app = create_app(settings.model_copy(update={"metrics_token": "scrape-secret"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            refused = await c.get("/metrics")
            assert refused.status_code == 401
            assert refused.json()["error"] == "Unauthorized"
            wrong = await c.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            await scrape(c, {"Authorization": "Bearer scrape-secret"})


async def test_no_label_can_carry_personal_data(client, make_member):
    m = await make_member()
    body = sos()
    assert (await client.post("/v1/alerts", json=body, headers=m.headers)).status_code == 201
    text = (await client.get("/metrics")).text
    for secret in (str(m.id), m.token, body["client_alert_id"], "37.497", "127.027"):
        assert secret not in text
    for family in text_string_to_metric_families(text):
        if family.name.startswith("ansim_"):
            for sample in family.samples:
                assert set(sample.labels) <= {
                    "source",
                    "outcome",
                    "status",
                    "pid",
                    "le",
                    "district",
                    "path",
                    "level",
                    "reason",
                    "channel",
                }, sample


async def test_production_without_a_token_refuses_to_be_scraped(settings, migrated):
    app = create_app(settings.model_copy(update={"environment": "production"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            refused = await c.get("/metrics")
            assert refused.status_code == 401
            assert "ANSIM_METRICS_TOKEN" in refused.json()["detail"]


def test_multiprocess_mode_sums_the_workers(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, what two worker processes counted is in any one's scrape."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "import time; from app import metrics; "
        "metrics.sos_accepted('button', created=True, folded=False, started=time.perf_counter())"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    render = "from app import metrics; print(metrics.render(metrics.Snapshot()).decode())"
    out = subprocess.run(
        [sys.executable, "-c", render], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(out)
        for sample in family.samples
    }
    assert accepted(values, "button", "created") == 2
    assert values[("ansim_intake_seconds_count", (("source", "button"),))] == 2
