"""A store's cancel and duress as the district console sees them, through the real outbox,
dispatcher and console WebSocket: "call the store to verify" with its phone, and a duress
escalated exactly like a member's (the same ``duress`` kind, escalated at once)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.admin.test_jobs import dispatcher
from tests.devices.helpers import make_device, send_signal
from tests.security.live_server import serve, ws_session

A = (126.90, 37.50, 126.95, 37.55)
IN_A = (37.52, 126.92)


def _incident_events(ms: list[dict[str, Any]]) -> list[str]:
    return [m["event"] for m in ms if m["type"] == "incident"]


async def test_the_console_is_told_to_call_the_store_then_sees_the_duress_escalate(
    app, client, pool, redis, settings, make_place, make_district, make_staff
):
    a = await make_district("A", "District A", *A)
    disp_a = await make_staff("dispatcher", district_ids=(a,))
    button = await make_device(pool, await make_place("GS25 Mangwon", *IN_A, phone="02-333-4444"))

    def done(ms: list[dict[str, Any]]) -> bool:
        return "escalated" in _incident_events(ms)

    async with serve(app) as host, dispatcher(pool, redis, settings):
        console = asyncio.create_task(
            ws_session(f"ws://{host}/v1/console/stream?token={disp_a.token}", until=done, within=10)
        )
        await asyncio.sleep(0.5)
        panic = await send_signal(client, button, {"type": "panic"})
        await send_signal(client, button, {"type": "cancel"})
        await send_signal(client, button, {"type": "duress"})
        msgs, _ = await console
    incident_id = panic.json()["incident_id"]
    seen = [m for m in msgs if m["type"] == "incident" and m["incident"]["id"] == incident_id]
    kinds = [m["event"] for m in seen]
    assert kinds[:1] == ["reported"] and {"cancel_requested", "duress", "escalated"} <= set(kinds)
    request = next(m for m in seen if m["event"] == "cancel_requested")
    assert request["data"]["store"]["phone"] == "02-333-4444"
    assert request["data"]["store"]["name"] == "GS25 Mangwon"
    assert "cancel_requested" in request["incident"]["flags"]
    duress = next(m for m in seen if m["event"] == "duress")
    assert duress["incident"]["duress"] is True
    assert duress["data"]["via"] == "signal"
    escalated = next(m for m in seen if m["event"] == "escalated")
    assert escalated["data"]["reason"] == "duress"
    assert escalated["incident"]["escalation_level"] == 1
    assert "cancel_requested" not in escalated["incident"]["flags"]
    # Never shown as cancelled: not to the console, not in the incident.
    assert all(m["incident"]["status"] == "new" for m in seen)
    inc = await pool.fetchrow("SELECT status, closed_at, escalation_level FROM incident")
    assert (inc["status"], inc["closed_at"], inc["escalation_level"]) == ("new", None, 1)
