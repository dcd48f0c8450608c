"""Walk me home with real processes: a walk that does not arrive asks her "Are you OK?" (a push
through the gateway), and with no answer it is an SOS on her district's console on time, with
her guardian texted, all driven by the timers in PostgreSQL (nothing runs on the phone)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.harness import (
    Console,
    GatewayReceiver,
    free_port,
    stack_env,
    start_api,
    start_dispatcher,
)

A = (126.90, 37.50, 126.95, 37.55)
HOME = (37.52, 126.92)
START = (37.51, 126.91)
ARRIVE_IN_S = 3.0
GRACE_S = 1.0
ASK_S = 2.0
#: The sweep runs every 0.2 s; the relay, the dispatcher and the console add their part.
ON_TIME_S = 2.0


@pytest.fixture(scope="module")
async def gateway():
    async with GatewayReceiver.running(free_port()) as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def stack(migrated, settings, gateway):
    port = free_port()
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=gateway.port,
        ANSIM_SAFE_RETURN_GRACE_S=str(GRACE_S),
        ANSIM_SAFE_RETURN_ASK_S=str(ASK_S),
        ANSIM_SAFE_RETURN_SWEEP_S="0.2",
        ANSIM_SAFE_RETURN_MIN_LEAD_S="1",
        ANSIM_NOTIFY_POLL_S="0.2",
        # Nobody acknowledges in this test: keep the escalation ladder out of the way.
        ANSIM_ACK_DEADLINE_S="60",
    )
    api = await asyncio.to_thread(start_api, port, env)
    dispatcher = start_dispatcher(f"e2e-saferet-{port}", env)
    try:
        yield {"port": port}
    finally:
        dispatcher.stop()
        api.stop()


async def _received(gateway, pred, within: float) -> None:
    """Until the gateway got a message matching ``pred`` (or ``within`` seconds passed)."""
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.05) + 1):
        if any(pred(m["message"]) for m in gateway.received) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def test_a_walk_with_no_arrival_is_an_sos_on_the_district_console_on_time(
    stack, gateway, make_district, make_staff, make_member, pool
):
    a = await make_district("A", "District A", *A)
    dispatcher = await make_staff("dispatcher", district_ids=(a,), name="Kim A")
    her = await make_member("Jiyoung")
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mother', '+82101')",
        uuid.uuid4(),
        her.id,
    )
    port = stack["port"]
    async with (
        Console(port, dispatcher.token) as console,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        eta = datetime.now(UTC) + timedelta(seconds=ARRIVE_IN_S)
        r = await http.post(
            "/v1/safe-return",
            json={
                "destination": {"lat": HOME[0], "lon": HOME[1]},
                "origin": {"lat": START[0], "lon": START[1]},
                "expected_arrival_at": eta.isoformat(),
                "share_with_control_centre": True,
            },
            headers=her.headers,
        )
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        due = eta + timedelta(seconds=GRACE_S)
        sos_due = due + timedelta(seconds=ASK_S)

        # The ask: a push to her phone, within the sweep's tolerance of its due time.
        await _received(
            gateway,
            lambda m: m.get("type") == "safe_return_check",
            ARRIVE_IN_S + GRACE_S + ON_TIME_S + 5,
        )
        asks = [
            m["message"]
            for m in gateway.received
            if m["message"].get("type") == "safe_return_check"
        ]
        assert asks and asks[0]["reason"] == "no_arrival"
        asked_at = datetime.now(UTC)
        assert (asked_at - due).total_seconds() < ON_TIME_S

        # No answer: an SOS on district A's console.
        msg = await console.wait_for(
            lambda m: (
                m["type"] == "incident"
                and m["incident"].get("source") == "safe_return"
                and m["event"] in ("reported", "routed")
            ),
            within=ASK_S + ON_TIME_S + 5,
        )
        seen_at = datetime.now(UTC)
        assert (seen_at - sos_due).total_seconds() < ON_TIME_S, seen_at - sos_due
        assert seen_at >= sos_due
        incident_id = msg["incident"]["id"]

        # Her guardian was told she set off, and of the SOS, through the gateway.
        await _received(gateway, lambda m: "SOS" in m.get("text", ""), 5)
        texts = [m["message"].get("text", "") for m in gateway.received if m["path"] == "/sms"]
        assert any("set off" in t for t in texts), texts
        assert any("SOS" in t for t in texts), texts

        # The console's view of the district's walks highlights it.
        walks = await http.get("/v1/console/safe-return", headers=dispatcher.headers)
        assert walks.status_code == 200
        highlighted = [s for s in walks.json()["sessions"] if s["sos"]]
        assert [s["session_id"] for s in highlighted] == [sid]
        assert highlighted[0]["incident_id"] == incident_id
