"""Fault (d): the push and SMS gateways fail: one volunteer's pushes get HTTP 500, the other's
hang past the client timeout, every guardian SMS gets 500. Every attempt is recorded in
``delivery_attempt``, the failures are on the timeline (``notify_failed``), nobody acknowledges
so the incident escalates on time and the offers are pushed again, and nothing is stuck: no
pending stream entry, no unpublished outbox row, no dead letter.

tests/dispatch/test_routing.py covers the happy paths of the same code (503s then a success,
a 4xx not retried, the Idempotency-Key); this is the all-fail case end to end."""

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
from tests.faults.common import write_artifact

GATEWAY_PORT = 8670
IN_A = (37.52, 126.92)
CLIENT_TIMEOUT_S = 0.3


class BrokenGateway:
    def __init__(self, slow_target: str) -> None:
        self.slow_target = slow_target
        self.calls: list[tuple[str, str]] = []

    async def handle(self, request: Request) -> JSONResponse:
        body = orjson.loads(await request.body())
        self.calls.append((request.url.path, body["to"]))
        if body["to"] == self.slow_target:
            await asyncio.sleep(CLIENT_TIMEOUT_S * 5)  # the client gives up first
        return JSONResponse({"error": "internal"}, status_code=500)


@pytest.fixture
async def gateway(request):
    slow = f"volunteer:{uuid.uuid4()}"
    broken = BrokenGateway(slow)
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
            port=GATEWAY_PORT,
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


async def test_failing_gateways_are_retried_recorded_then_escalated_and_nothing_is_stuck(
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
            "push_gateway_url": f"http://127.0.0.1:{GATEWAY_PORT}/push",
            "sms_gateway_url": f"http://127.0.0.1:{GATEWAY_PORT}/sms",
            "gateway_hmac_key": "faults",
            "gateway_max_attempts": 3,
            "gateway_backoff_s": 0.01,
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
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                attempts = await pool.fetchval(
                    "SELECT count(*) FROM delivery_attempt WHERE incident_id = $1", stored.id
                )
                pending = (await redis.xpending(s.stream_incidents, s.stream_group))["pending"]
                if attempts >= 9 + 6 and pending == 0:  # reported: 3 × 3, escalated: 2 × 3
                    break
                await asyncio.sleep(0.1)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)
    rows = await pool.fetch(
        "SELECT channel, target, attempt, ok, http_status, error FROM delivery_attempt"
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
            " timeout for the other; SMS gateway: HTTP 500",
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
    # Retried to the limit each time it was tried: after the report, and after the escalation.
    assert [r["attempt"] for r in push_500] == [1, 2, 3, 1, 2, 3]
    assert {r["http_status"] for r in push_500} == {500}
    assert [r["attempt"] for r in push_slow] == [1, 2, 3, 1, 2, 3]
    assert {r["error"] for r in push_slow} == {"ReadTimeout"} and not any(
        r["http_status"] for r in push_slow
    )
    assert [r["attempt"] for r in sms] == [1, 2, 3]  # guardians are texted on the report only
    assert sum(1 for k, _ in events if k == "notify_failed") == 5
    assert escalations == [{"level": 1, "reason": "ack_timeout"}]
    assert console[:1] == ["reported"] and "escalated" in console
    assert (pending, unpublished, dead) == (0, 0, 0)
