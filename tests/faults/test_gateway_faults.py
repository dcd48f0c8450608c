"""Fault (d): the push and SMS gateways never recover: one volunteer's pushes get HTTP 500, the
other's hang past the client timeout, every guardian SMS gets 500. Each message is retried from
PostgreSQL with backoff until its deadline (shortened to 3 s here; 30 minutes by default), every
attempt is recorded in ``delivery_attempt``, and then it is a visible failure: one
``notify_failed`` per message on the timeline and on the console. Nobody acknowledges, so the
incident escalates on time (which queues nothing twice), and nothing is stuck: no pending
stream entry, no unpublished outbox row, no dead letter, no message still pending.

tests/notifications/ covers the recoveries (503s then a success, an outage then delivery, a
dispatcher killed between attempts); this is the all-fail case end to end."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.dispatch import presence
from app.dispatch.worker import Dispatcher
from app.incidents.store import NewIncident, insert_incident
from tests.e2e.harness import free_port
from tests.faults.common import write_artifact

IN_A = (37.52, 126.92)
CLIENT_TIMEOUT_S = 0.3


class BrokenGateway:
    def __init__(self, slow_target: str, port: int) -> None:
        self.slow_target = slow_target
        self.port = port
        self.calls: list[tuple[str, str]] = []

    async def handle(self, request: Request) -> JSONResponse:
        body = orjson.loads(await request.body())
        self.calls.append((request.url.path, body["to"]))
        if body["to"] == self.slow_target:
            await asyncio.sleep(CLIENT_TIMEOUT_S * 5)  # the client gives up first
        return JSONResponse({"error": "internal"}, status_code=500)


@pytest.fixture
async def gateway(request):
    port = free_port()
    slow = f"volunteer:{uuid.uuid4()}"
    broken = BrokenGateway(slow, port)
    app = Starlette(
        routes=[
            Route("/push", broken.handle, methods=["POST"]),
            Route("/sms", broken.handle, methods=["POST"]),
        ]
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # uvicorn exposes only a flag
        if server.started:
            break
        await asyncio.sleep(0.02)
    yield broken
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def _console_has(redis, s, failures: int) -> bool:
    events = [orjson.loads(f[b"body"])["event"] for _, f in await redis.xrange(s.console_stream)]
    return events.count("notify_failed") >= failures


async def test_failing_gateways_are_retried_until_the_deadline_then_shown_failed(
    pool, redis, settings, gateway, make_member, make_staff, make_district
):
    await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member()
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+821011112222')",
        uuid.uuid4(),
        member.id,
    )
    erroring = await make_staff("volunteer", name="V500", badge_number="B-1")
    slow_id = uuid.UUID(gateway.slow_target.split(":")[1])
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, badge_number, active)"
        " VALUES ($1, 'slow-vol', 'Slow', 'volunteer', 'x', 'B-2', true)",
        slow_id,
    )
    for vid, dlat in ((erroring.id, 0.001), (slow_id, 0.002)):
        await presence.report(redis, settings, volunteer_id=vid, lat=IN_A[0] + dlat, lon=IN_A[1])
    s = settings.model_copy(
        update={
            "push_gateway_url": f"http://127.0.0.1:{gateway.port}/push",
            "sms_gateway_url": f"http://127.0.0.1:{gateway.port}/sms",
            "gateway_hmac_key": "faults",
            "notify_deadline_s": 3.0,
            "notify_backoff_base_s": 0.2,
            "notify_backoff_cap_s": 0.5,
            "notify_poll_s": 0.1,
            "ack_deadline_s": 1.0,
            "deadline_poll_s": 0.2,
            "escalation_ladder": [],
            "escalation_repeat_s": 0.0,
        }
    )
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=httpx.Timeout(CLIENT_TIMEOUT_S)) as http:
        worker = Dispatcher(pool=pool, redis=redis, settings=s, http=http, name="faults-gw")
        task = asyncio.create_task(worker.run())
        try:
            stored = await insert_incident(
                pool,
                NewIncident(
                    source="app",
                    trigger="button",
                    actor="t",
                    member_id=member.id,
                    lat=IN_A[0],
                    lon=IN_A[1],
                ),
            )
            assert stored is not None
            worker.relay.kick()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                pending = (await redis.xpending(s.stream_incidents, s.stream_group))["pending"]
                failed = await pool.fetchval(
                    "SELECT count(*) FROM notification WHERE status = 'failed'"
                )
                if failed == 4 and pending == 0 and await _console_has(redis, s, 4):
                    break
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
    rows = await pool.fetch(
        "SELECT channel, target, attempt, ok, http_status, error, notification_id"
        " FROM delivery_attempt"
        " WHERE incident_id = $1 ORDER BY id",
        stored.id,
    )
    by_target: dict[str, list] = {}
    for r in rows:
        by_target.setdefault(r["target"], []).append(r)
    push_500 = by_target[f"volunteer:{erroring.id}"]
    push_slow = by_target[gateway.slow_target]
    sms = [r for r in rows if r["channel"] == "sms"]
    events = [
        (e["kind"], e["data"])
        for e in await pool.fetch(
            "SELECT kind, data FROM incident_event WHERE incident_id = $1 ORDER BY id", stored.id
        )
    ]
    escalations = [d for k, d in events if k == "escalated"]
    console = [orjson.loads(f[b"body"])["event"] for _, f in await redis.xrange(s.console_stream)]
    pending = (await redis.xpending(s.stream_incidents, s.stream_group))["pending"]
    unpublished = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    dead = await redis.xlen(s.stream_dead_letter)
    write_artifact(
        "gateway_faults",
        {
            "faults_injected": sum(1 for r in rows if not r["ok"]),
            "fault": "push gateway: HTTP 500 for one volunteer, hangs past the 0.3 s client"
            " timeout for the other; SMS gateway: HTTP 500; notification deadline 3 s",
            "sent": 1,
            "delivery_attempts_recorded": len(rows),
            "http_500": sum(1 for r in rows if r["http_status"] == 500),
            "timeouts": sum(1 for r in rows if r["error"] == "ReadTimeout"),
            "notify_failed_events": sum(1 for k, _ in events if k == "notify_failed"),
            "escalations": len(escalations),
            "delivered_to_console": int("reported" in console),
            "console_messages": len(console),
            "pending_stream_entries": pending,
            "unpublished_outbox_rows": unpublished,
            "dead_letters": dead,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert all(not r["ok"] for r in rows)
    # Retried, one attempt per claim, until the deadline: then failed, once per message (the
    # guardian is texted on the report and on the escalation: two messages).
    by_message: dict[int, list] = {}
    for r in rows:
        by_message.setdefault(r["notification_id"], []).append(r)
    assert len(by_message) == 4 and len({r["notification_id"] for r in sms}) == 2
    for attempts in by_message.values():
        assert [r["attempt"] for r in attempts] == list(range(1, len(attempts) + 1))
        assert len(attempts) >= 3
    assert {r["http_status"] for r in push_500} == {500}
    assert {r["error"] for r in push_slow} == {"ReadTimeout"} and not any(
        r["http_status"] for r in push_slow
    )
    statuses = await pool.fetch("SELECT status, count(*) AS n FROM notification GROUP BY 1")
    assert {r["status"]: r["n"] for r in statuses} == {"failed": 4}
    assert sum(1 for k, _ in events if k == "notify_failed") == 4
    assert escalations == [{"level": 1, "reason": "ack_timeout"}]
    assert console[:1] == ["reported"] and "escalated" in console
    assert console.count("notify_failed") == 4  # the console shows each failure
    assert (pending, unpublished, dead) == (0, 0, 0)
