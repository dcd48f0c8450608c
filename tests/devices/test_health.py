"""Device health both ways: back online, low battery and tamper once per episode, and the
buttons in trouble now for the console snapshot (scoped like every console message)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.devices import health
from tests.admin.test_jobs import dispatcher
from tests.devices.helpers import make_device, send_signal
from tests.security.live_server import serve, ws_session

A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
IN_A = (37.52, 126.92)
IN_B = (37.52, 126.97)


async def _health_events(pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", health.TOPIC_DEVICE_HEALTH
    )
    return [r["payload"]["event"] for r in rows]


@pytest.fixture
async def button(pool, make_place, make_district):
    await make_district("A", "District A", *A)
    return await make_device(pool, await make_place("GS25 A", *IN_A, phone="02-111-2222"))


async def test_a_button_back_online_is_reported_once_per_outage(client, pool, settings, button):
    await pool.execute(
        "UPDATE device SET created_at = now() - interval '1 day',"
        " last_heartbeat_at = now() - interval '2 hours'"
    )
    assert await health.report_offline(pool, settings) == 1
    for _ in range(3):
        assert (await send_signal(client, button, {"type": "heartbeat"})).status_code == 200
    assert await _health_events(pool) == ["online"]
    (row,) = await pool.fetch("SELECT payload FROM outbox WHERE topic = 'device.health'")
    payload = row["payload"]
    assert payload["district_code"] == "A"
    assert payload["device"]["id"] == str(button.id)
    assert payload["device"]["offline_since"] is None
    assert payload["data"]["offline_since"] is not None
    assert payload["device"]["store"]["phone"] == "02-111-2222"
    # Not a heartbeat (a test press, a panic): still offline, nothing said.
    await pool.execute("UPDATE device SET last_heartbeat_at = now() - interval '2 hours'")
    assert await health.report_offline(pool, settings) == 1
    await send_signal(client, button, {"type": "test"})
    assert await _health_events(pool) == ["online"]
    await send_signal(client, button, {"type": "heartbeat"})  # the second outage ends
    assert await _health_events(pool) == ["online", "online"]


async def test_low_battery_is_reported_once_per_episode(client, pool, button):
    for _ in range(3):
        r = await send_signal(client, button, {"type": "low_battery", "battery_pct": 9})
        assert r.status_code == 200
        await send_signal(client, button, {"type": "heartbeat", "battery_pct": 9})
    assert await _health_events(pool) == ["low_battery"]
    payload = (await pool.fetchrow("SELECT payload FROM outbox"))["payload"]
    assert payload["data"] == {"battery_pct": 9}
    # New batteries end the episode; the next low battery is a new one.
    await send_signal(client, button, {"type": "heartbeat", "battery_pct": 98})
    assert await pool.fetchval("SELECT low_battery_at FROM device") is None
    await send_signal(client, button, {"type": "low_battery", "battery_pct": 12})
    assert await _health_events(pool) == ["low_battery", "low_battery"]
    # So is one long after the last report.
    await pool.execute("UPDATE device SET low_battery_at = now() - interval '2 hours'")
    await send_signal(client, button, {"type": "low_battery", "battery_pct": 11})
    assert await _health_events(pool) == ["low_battery"] * 3


async def test_tamper_is_reported_once_per_episode(client, pool, button):
    for _ in range(3):
        assert (await send_signal(client, button, {"type": "tamper"})).status_code == 200
    assert await _health_events(pool) == ["tamper"]
    assert await pool.fetchval("SELECT count(*) FROM security_event") == 3  # each one recorded
    await pool.execute("UPDATE device SET tampered_at = now() - interval '2 hours'")
    await send_signal(client, button, {"type": "tamper"})
    assert await _health_events(pool) == ["tamper", "tamper"]


async def test_the_buttons_in_trouble_are_listed_in_the_consoles_scope(
    pool, make_place, make_district
):
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    off_a = await make_device(pool, await make_place("GS25 A", *IN_A))
    off_b = await make_device(pool, await make_place("CU B", *IN_B))
    outside = await make_device(pool, await make_place("Far away", 35.1, 129.0))
    fine = await make_device(pool, await make_place("Fine A", *IN_A))
    low = await make_device(pool, await make_place("Low A", *IN_A))
    old_tamper = await make_device(pool, await make_place("Old tamper A", *IN_A))
    await pool.execute(
        "UPDATE device SET offline_reported_at = now() WHERE id = ANY($1)",
        [off_a.id, off_b.id, outside.id],
    )
    await pool.execute(
        "UPDATE device SET low_battery_at = now(), tampered_at = now() WHERE id = $1", low.id
    )
    await pool.execute(
        "UPDATE device SET tampered_at = now() - interval '2 hours' WHERE id = $1", old_tamper.id
    )
    await pool.execute("UPDATE device SET last_heartbeat_at = now() WHERE id = $1", fine.id)

    in_a = await health.console_devices(pool, city_wide=False, district_ids=frozenset({a}))
    assert [(d["id"], d["problems"]) for d in in_a] == [
        (str(off_a.id), ["offline"]),
        (str(low.id), ["low_battery", "tamper"]),
    ]
    assert in_a[0]["store"]["name"] == "GS25 A" and in_a[0]["district_code"] == "A"
    assert in_a[0]["offline_since"] is not None
    in_b = await health.console_devices(pool, city_wide=False, district_ids=frozenset({b}))
    assert [d["id"] for d in in_b] == [str(off_b.id)]
    city = await health.console_devices(pool, city_wide=True, district_ids=frozenset())
    assert {d["id"] for d in city} == {str(off_a.id), str(off_b.id), str(outside.id), str(low.id)}
    await pool.execute("UPDATE device SET enabled = false WHERE id = $1", off_a.id)
    assert [
        d["id"] for d in await health.console_devices(pool, city_wide=False, district_ids={a})
    ] == [str(low.id)]


async def test_device_messages_and_the_snapshot_reach_the_district_console_only(
    app, client, pool, redis, settings, make_place, make_district, make_staff
):
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    disp_a = await make_staff("dispatcher", district_ids=(a,))
    disp_b = await make_staff("dispatcher", district_ids=(b,))
    button = await make_device(pool, await make_place("GS25 A", *IN_A))
    dark_b = await make_device(pool, await make_place("CU B", *IN_B))
    await pool.execute(
        "UPDATE device SET offline_reported_at = now() - interval '1 hour' WHERE id = ANY($1)",
        [button.id, dark_b.id],
    )

    def events(ms: list[dict[str, Any]]) -> list[str]:
        return [m["event"] for m in ms if m["type"] == "device"]

    async with serve(app) as host, dispatcher(pool, redis, settings):
        url = f"ws://{host}/v1/console/stream?token="
        console_a = asyncio.create_task(
            ws_session(url + disp_a.token, until=lambda ms: len(events(ms)) >= 3, within=8)
        )
        console_b = asyncio.create_task(ws_session(url + disp_b.token, within=3))
        await asyncio.sleep(0.5)  # both connected, with their snapshots
        started = time.monotonic()
        for signal in (
            {"type": "heartbeat"},
            {"type": "heartbeat"},
            {"type": "low_battery", "battery_pct": 8},
            {"type": "low_battery", "battery_pct": 8},
            {"type": "tamper"},
            {"type": "tamper"},
        ):
            assert (await send_signal(client, button, signal)).status_code == 200
        msgs_a, _ = await console_a
        latency = time.monotonic() - started
        msgs_b, _ = await console_b
    (snap_a,) = [m for m in msgs_a if m["type"] == "snapshot"]
    assert [d["id"] for d in snap_a["devices"]] == [str(button.id)]
    assert snap_a["devices"][0]["problems"] == ["offline"]
    (snap_b,) = [m for m in msgs_b if m["type"] == "snapshot"]
    assert [d["id"] for d in snap_b["devices"]] == [str(dark_b.id)]
    assert events(msgs_a) == ["online", "low_battery", "tamper"]
    online = next(m for m in msgs_a if m["type"] == "device")
    assert online["device"]["id"] == str(button.id) and online["district_code"] == "A"
    assert online["cursor"]
    assert events(msgs_b) == []
    assert latency < 5
