"""The dispatcher's periodic jobs: device-offline reports (to the store's district console, once
per outage) and the trail retention purge."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.devices import health
from app.dispatch.worker import Dispatcher
from app.incidents.store import NewIncident, insert_incident
from tests.devices.helpers import make_device, send_signal
from tests.security.live_server import serve, ws_session

A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
IN_A = (37.52, 126.92)
IN_B = (37.52, 126.97)


@contextlib.asynccontextmanager
async def dispatcher(pool, redis, settings, **overrides: Any) -> AsyncIterator[Dispatcher]:
    s = settings.model_copy(update=overrides)
    async with httpx.AsyncClient() as http:
        worker = Dispatcher(pool=pool, redis=redis, settings=s, http=http, name="jobs-test")
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)


async def _silent_device(pool, place_id):
    """A button installed yesterday whose last heartbeat was two hours ago."""
    device = await make_device(pool, place_id)
    await pool.execute(
        "UPDATE device SET created_at = now() - interval '1 day',"
        " last_heartbeat_at = now() - interval '2 hours' WHERE id = $1",
        device.id,
    )
    return device


async def _offline_rows(pool):
    return await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", health.TOPIC_DEVICE_OFFLINE
    )


async def test_a_silent_button_is_reported_once_per_outage_and_rearmed_by_a_heartbeat(
    client, pool, settings, make_place, make_district
):
    await make_district("A", "District A", *A)
    device = await _silent_device(pool, await make_place("GS25 A", *IN_A))
    assert await health.report_offline(pool, settings) == 1
    assert await health.report_offline(pool, settings) == 0  # same outage: not again
    (row,) = await _offline_rows(pool)
    payload = row["payload"]
    assert payload["device"]["id"] == str(device.id)
    assert payload["district_code"] == "A"
    assert payload["device"]["store"]["name"] == "GS25 A"
    kinds = await pool.fetch("SELECT kind, device_id FROM security_event")
    assert [(k["kind"], k["device_id"]) for k in kinds] == [("device_offline", device.id)]

    r = await send_signal(client, device, {"type": "heartbeat"})
    assert r.status_code == 200
    assert await pool.fetchval(
        "SELECT offline_reported_at IS NULL FROM device WHERE id = $1", device.id
    )
    assert await health.report_offline(pool, settings) == 0  # alive again
    await pool.execute(
        "UPDATE device SET last_heartbeat_at = now() - interval '1 hour' WHERE id = $1", device.id
    )
    assert await health.report_offline(pool, settings) == 1  # a second outage: a second report


async def test_concurrent_dispatchers_report_an_outage_exactly_once(pool, settings, make_place):
    place = await make_place("GS25", *IN_A)
    for _ in range(5):
        await _silent_device(pool, place)
    counts = await asyncio.gather(*(health.report_offline(pool, settings) for _ in range(4)))
    assert sum(counts) == 5
    assert len(await _offline_rows(pool)) == 5


async def test_disabled_and_recently_heard_buttons_are_not_reported(pool, settings, make_place):
    place = await make_place("GS25", *IN_A)
    disabled = await _silent_device(pool, place)
    await pool.execute("UPDATE device SET enabled = false WHERE id = $1", disabled.id)
    await make_device(pool, place)  # new: its first heartbeat is not yet due
    recent = await _silent_device(pool, place)
    await pool.execute("UPDATE device SET last_heartbeat_at = now() WHERE id = $1", recent.id)
    assert await health.report_offline(pool, settings) == 0


async def test_the_offline_report_reaches_the_stores_district_console_only(
    app, pool, redis, settings, make_place, make_district, make_staff, make_member
):
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    disp_a = await make_staff("dispatcher", district_ids=(a,))
    disp_b = await make_staff("dispatcher", district_ids=(b,))
    city = await make_staff("dispatcher", city_wide=True)
    member = await make_member()

    def device_msg(ms: list[dict[str, Any]]) -> bool:
        return any(m["type"] == "device" for m in ms)

    async with (
        serve(app) as host,
        dispatcher(pool, redis, settings, device_offline_after_s=60.0, device_offline_check_s=0.2),
    ):
        url = f"ws://{host}/v1/console/stream?token="
        sessions = [
            asyncio.create_task(ws_session(url + disp_a.token, until=device_msg, within=8)),
            asyncio.create_task(ws_session(url + city.token, until=device_msg, within=8)),
        ]

        def b_saw_the_incident(ms: list[dict[str, Any]]) -> bool:
            return any(m["type"] == "incident" for m in ms)

        session_b = asyncio.create_task(
            ws_session(url + disp_b.token, until=b_saw_the_incident, within=8)
        )
        await asyncio.sleep(0.5)  # consoles connected
        device = await _silent_device(pool, await make_place("GS25 A", *IN_A))
        started = time.monotonic()
        (msgs_a, _), (msgs_city, _) = await asyncio.gather(*sessions)
        latency = time.monotonic() - started
        # B is live (it gets its own incident, sent after the device went offline) and never
        # saw A's device.
        stored = await insert_incident(
            pool,
            NewIncident(
                source="app",
                trigger="button",
                actor="t",
                member_id=member.id,
                lat=IN_B[0],
                lon=IN_B[1],
            ),
        )
        msgs_b, _ = await session_b
    offline = [m for m in msgs_a if m["type"] == "device"]
    assert len(offline) == 1, msgs_a
    msg = offline[0]
    assert msg["event"] == "offline" and msg["device"]["id"] == str(device.id)
    assert msg["district_code"] == "A" and msg["cursor"]
    assert msg["device"]["store"]["name"] == "GS25 A"
    assert msg["device"]["last_heartbeat_at"] is not None
    assert [m["device"]["id"] for m in msgs_city if m["type"] == "device"] == [str(device.id)]
    assert [m for m in msgs_b if m["type"] == "device"] == []
    assert any(m["type"] == "incident" and m["incident"]["id"] == str(stored.id) for m in msgs_b)
    assert latency < 5


async def test_the_retention_job_runs_in_every_dispatcher_and_purges_closed_trails(
    pool, redis, settings, make_member
):
    member = await make_member()
    ids = []
    for _ in range(2):
        stored = await insert_incident(
            pool,
            NewIncident(
                source="app",
                trigger="button",
                actor="t",
                member_id=member.id,
                lat=37.5212345,
                lon=126.9212345,
                accuracy_m=5,
            ),
        )
        ids.append(stored.id)
        await pool.execute(
            "INSERT INTO location_point (incident_id, geog) VALUES"
            " ($1, ST_SetSRID(ST_MakePoint(126.9212345, 37.5212345), 4326)::geography),"
            " ($1, ST_SetSRID(ST_MakePoint(126.9212399, 37.5212399), 4326)::geography)",
            stored.id,
        )
    closed, still_open = ids
    await pool.execute(
        "UPDATE incident SET status = 'resolved', closed_at = now() - interval '2 hours',"
        " disposition = 'ok' WHERE id = $1",
        closed,
    )
    async with (
        dispatcher(pool, redis, settings, trail_retention_s=3600.0, retention_interval_s=0.2),
        dispatcher(pool, redis, settings, trail_retention_s=3600.0, retention_interval_s=0.2),
    ):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not await pool.fetchval(
                "SELECT count(*) FROM location_point WHERE incident_id = $1", closed
            ):
                break
            await asyncio.sleep(0.1)
    assert (
        await pool.fetchval("SELECT count(*) FROM location_point WHERE incident_id = $1", closed)
        == 0
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM location_point WHERE incident_id = $1", still_open
        )
        == 2
    )
    row = await pool.fetchrow(
        "SELECT flags, ST_Y(location::geometry) AS lat, accuracy_m FROM incident WHERE id = $1",
        closed,
    )
    assert "location_purged" in row["flags"] and row["accuracy_m"] is None
    assert row["lat"] == pytest.approx(37.52)  # coarsened to the ~1 km grid
    purged = await pool.fetchval(
        "SELECT count(*) FROM incident_event WHERE kind = 'trail_purged' AND incident_id = $1",
        closed,
    )
    assert purged == 1  # two dispatchers, one purge
