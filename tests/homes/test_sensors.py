"""Home sensors sign like store buttons (replays and old clocks refused, each endpoint knows only
its own devices), report their health on the district's consoles like buttons, and the
console's incident detail shows her home, the sensor that fired and the arming history."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from app.devices import health
from app.devices import service as devices
from app.devices.signing import new_nonce
from app.dispatch import routing
from app.dispatch.gateways import build_gateways
from app.dispatch.relay import publish_pending
from app.homes import service
from app.homes.cli import homes_app
from app.incidents.store import NewIncident, insert_incident
from tests.devices.helpers import make_device, send_signal
from tests.homes.helpers import ADDRESS, DISTRICT, HOME_LAT, HOME_LON, make_home, signal


@pytest.fixture
async def her(make_member):
    return await make_member()


@pytest.fixture
async def district(make_district):
    return await make_district(*DISTRICT)


@pytest.fixture
async def home(pool, district, her):
    return await make_home(pool, her.id)


async def test_a_replayed_or_stale_signal_is_refused_and_raises_nothing(client, pool, home):
    nonce = new_nonce()
    first = await signal(client, home.button, {"type": "test"}, nonce=nonce)
    assert first.status_code == 200 and first.json()["home"]["id"] == str(home.id)
    again = await signal(client, home.button, {"type": "panic"}, nonce=nonce)
    assert again.status_code == 401 and again.json()["detail"] == "nonce already used"
    stale = await signal(client, home.button, {"type": "panic"}, timestamp=int(time.time()) - 900)
    assert stale.status_code == 401
    assert stale.json() == {
        "error": "DeviceUnauthorized",
        "detail": "timestamp outside the accepted window",
    }
    assert abs(int(stale.headers["X-Ansim-Server-Time"]) - time.time()) < 5
    forged = await signal(client, home.button, {"type": "panic"}, secret="0" * 64)
    assert forged.status_code == 401 and forged.json()["detail"] == "signature rejected"
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0
    kinds = await pool.fetch("SELECT kind FROM security_event ORDER BY id")
    assert [r["kind"] for r in kinds] == [
        "device_nonce_reused",
        "device_stale_timestamp",
        "device_bad_signature",
    ]


async def test_each_endpoint_knows_only_its_own_devices(client, pool, home, make_place):
    store_button = await make_device(pool, await make_place("GS25", HOME_LAT, HOME_LON))
    r = await send_signal(client, store_button, {"type": "panic"}, url=home.button.url)
    assert r.status_code == 401 and r.json()["detail"] == "signature rejected"
    # The home's button on the store endpoint: unknown there.
    r = await signal(
        client, home.button, {"type": "panic"}, url=f"/v1/devices/{home.button.id}/signals"
    )
    assert r.status_code == 401 and r.json()["detail"] == "signature rejected"


async def test_a_rotated_secret_verifies_during_the_grace_period_and_a_disabled_sensor_is_refused(
    client, pool, home
):
    creds, _until = await devices.rotate_secret(pool, device_id=home.door.id, grace_seconds=60)
    assert (await signal(client, home.door, {"type": "heartbeat"})).status_code == 200
    r = await signal(client, home.door, {"type": "heartbeat"}, secret=creds.secret)
    assert r.status_code == 200
    await devices.set_enabled(pool, device_id=home.door.id, enabled=False)
    r = await signal(client, home.door, {"type": "heartbeat"}, secret=creds.secret)
    assert r.status_code == 401


async def test_sensor_health_reaches_the_district_like_a_button(client, pool, settings, home):
    await pool.execute(
        "UPDATE device SET created_at = now() - interval '1 day',"
        " last_heartbeat_at = now() - interval '2 hours' WHERE id = $1",
        home.door.id,
    )
    assert await health.report_offline(pool, settings) == 1
    (offline,) = await pool.fetch("SELECT payload FROM outbox WHERE topic = 'device.offline'")
    payload = offline["payload"]
    assert payload["district_code"] == DISTRICT[0]
    assert payload["device"]["kind"] == "door" and payload["device"]["store"] is None
    assert payload["device"]["home"]["address"] == ADDRESS
    assert "lat" not in payload["device"]["home"]  # no position in a health message
    assert await health.report_offline(pool, settings) == 0  # once per outage

    assert (await signal(client, home.door, {"type": "heartbeat"})).status_code == 200
    r = await signal(client, home.door, {"type": "low_battery", "battery_pct": 7})
    assert r.status_code == 200
    await signal(client, home.door, {"type": "low_battery", "battery_pct": 7})  # same episode
    assert (await signal(client, home.door, {"type": "tamper"})).status_code == 200
    events = await pool.fetch(
        "SELECT payload->>'event' AS e FROM outbox WHERE topic = 'device.health' ORDER BY id"
    )
    assert [r["e"] for r in events] == ["online", "low_battery", "tamper"]
    assert (
        await pool.fetchval("SELECT count(*) FROM security_event WHERE kind = 'device_tamper'") == 1
    )
    trouble = await health.console_devices(
        pool, city_wide=False, district_ids=frozenset({uuid.UUID(payload["district_id"])})
    )
    assert [(d["id"], sorted(d["problems"])) for d in trouble] == [
        (str(home.door.id), ["low_battery", "tamper"])
    ]


async def test_the_console_detail_shows_her_home_the_sensor_and_the_arming_history(
    client, pool, redis, settings, her, home, district, make_staff, make_district
):
    r = await client.post(f"/v1/me/homes/{home.id}/arm", json={"mode": "away"}, headers=her.headers)
    assert r.status_code == 200
    await signal(client, home.door, {"type": "open"})
    await client.post(f"/v1/me/homes/{home.id}/disarm", json={"pin": "0000"}, headers=her.headers)
    await pool.execute("UPDATE home SET entry_due_at = now() WHERE entry_due_at IS NOT NULL")
    assert await service.raise_expired_entries(pool, settings) == 1
    incident_id = await pool.fetchval("SELECT id FROM incident")

    # She raises an SOS on her phone beside her home: one emergency, and her trail is shown.
    phone = await insert_incident(
        pool,
        NewIncident(
            source="app", trigger="button", actor="t", member_id=her.id,
            lat=HOME_LAT + 0.0005, lon=HOME_LON,
        ),
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO location_point (incident_id, geog, accuracy_m, captured_at) VALUES"
        " ($1, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography, 12, now())",
        phone.id,
        HOME_LAT + 0.001,
        HOME_LON,
    )
    await publish_pending(pool, redis, settings)
    async with httpx.AsyncClient() as http:
        ctx = routing.Context(pool, redis, settings, build_gateways(settings, http))
        for _id, fields in await redis.xrange(settings.stream_incidents):
            entry = routing.parse_entry(fields)
            if entry.incident_id == phone.id:
                await routing.handle(ctx, entry)
    assert await pool.fetchval("SELECT emergency_id FROM incident WHERE id = $1", phone.id) == (
        incident_id
    )

    dispatcher = await make_staff(district_ids=(district,))
    r = await client.get(f"/v1/console/incidents/{incident_id}", headers=dispatcher.headers)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["source"] == "sensor" and detail["trigger"] == "entry_delay_expired"
    h = detail["home"]
    assert h["address"] == ADDRESS and h["id"] == str(home.id) and h["state"] == "away"
    assert h["sensor"] == {
        "id": str(home.door.id),
        "kind": "door",
        "label": "door",
        "zone": None,
        "alarm_code": None,
    }
    assert [(e["kind"], e["via"]) for e in h["arming_history"]] == [
        ("arm_away", "app"),
        ("entry_started", "door"),
        ("wrong_pin", "app"),
        ("alarm", "dispatch"),
    ]
    assert h["arming_history"][-1]["incident_id"] == str(incident_id)
    (linked,) = detail["linked"]
    assert linked["id"] == str(phone.id) and linked["source"] == "app"
    assert [(p["lat"], p["lon"]) for p in linked["trail"]] == [
        pytest.approx((HOME_LAT + 0.001, HOME_LON))
    ]
    # Another district's dispatcher does not see it.
    elsewhere = await make_district("90009", "Elsewhere-gu", 126.0, 37.0, 126.1, 37.1)
    other = await make_staff(district_ids=(elsewhere,))
    r = await client.get(f"/v1/console/incidents/{incident_id}", headers=other.headers)
    assert r.status_code == 404


async def test_an_operator_registers_a_home_with_the_cli(pool, her, district):
    runner = CliRunner()
    # The CLI runs its own event loop (asyncio.run): off the test's loop.
    result = await asyncio.to_thread(
        runner.invoke,
        homes_app,
        ["create", "--member-id", str(her.id), "--address", ADDRESS,
         "--lat", str(HOME_LAT), "--lon", str(HOME_LON), "--keypad", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["district"] == {"code": DISTRICT[0], "name": DISTRICT[1]}
    assert [d["kind"] for d in out["devices"]] == ["door", "home_button", "keypad"]
    assert all(len(d["secret"]) == 64 for d in out["devices"])
    secrets = await pool.fetch(
        "SELECT kind, secret FROM device WHERE home_id = $1 ORDER BY kind",
        uuid.UUID(out["home_id"]),
    )
    assert sorted((d["kind"], d["secret"]) for d in out["devices"]) == [tuple(r) for r in secrets]
    bad = await asyncio.to_thread(
        runner.invoke,
        homes_app,
        ["create", "--member-id", str(uuid.uuid4()), "--address", ADDRESS,
         "--lat", "37.5", "--lon", "127.0"],
    )  # fmt: skip
    assert bad.exit_code == 1 and "no member" in bad.output


async def test_while_redis_is_down_alarms_are_accepted_and_a_keypad_duress_is_refused_but_acted_on(
    app, client, pool, her, home
):
    working = app.state.redis
    # Nothing listens on port 1: every Redis call fails at once, as in an outage.
    app.state.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        panic = await signal(client, home.button, {"type": "panic"})
        arm = await signal(client, home.keypad, {"type": "arm_away"})
        normal = await signal(client, home.keypad, {"type": "disarm", "pin": her.pin})
        duress = await signal(client, home.keypad, {"type": "disarm", "pin": her.duress_pin})
        replay = await signal(client, home.keypad, {"type": "disarm", "pin": her.duress_pin})
    finally:
        await app.state.redis.aclose()
        app.state.redis = working
    assert panic.status_code == 201
    assert (arm.status_code, normal.status_code, duress.status_code) == (503, 503, 503)
    assert normal.json() == duress.json() == replay.json()
    rows = await pool.fetch("SELECT trigger, duress, flags FROM incident ORDER BY received_at")
    assert [(r["trigger"], r["duress"]) for r in rows] == [
        ("home_panic", False),
        ("duress_disarm", True),  # once: its replay joined it
    ]
    assert "nonce_unchecked" in rows[0]["flags"] and "nonce_unchecked" in rows[1]["flags"]
    assert await pool.fetchval("SELECT state FROM home") == "disarmed"  # nothing changed


async def test_operators_see_home_sensors_health_beside_the_buttons(client, pool, home, make_staff):
    operator = await make_staff("operator")
    r = await client.get("/v1/admin/devices", headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    listed = body["devices"] if isinstance(body, dict) else body
    kinds = sorted(d["kind"] for d in listed)
    assert kinds == ["door", "home_button", "keypad", "motion"]
    assert all(d["store"] is None and d["home"]["address"] == ADDRESS for d in listed)
    assert all(d["district"]["code"] == DISTRICT[0] for d in listed)
