"""POST /v1/devices/{device_id}/signals: signed panic buttons in Safety House stores."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from redis.asyncio import Redis

from app.devices import service
from app.devices.signing import sign_request
from tests.devices.helpers import DeviceCreds, make_device, send_signal

STORE = (37.4979, 127.0276)  # near Gangnam station


@pytest.fixture
async def store(make_place, make_district):
    await make_district("11680", "Gangnam-gu", 127.0, 37.45, 127.1, 37.55)
    place_id = await make_place(
        "GS25 Gangnam Station",
        *STORE,
        address="396 Gangnam-daero, Seoul",
        phone="02-555-0100",
    )
    # Police at increasing distances, and a closer non-police place that must not be listed.
    await make_place("Yeoksam police box", 37.4995, 127.0290, kind="police_box")
    await make_place("Gangnam police station", 37.5094, 127.0363, kind="police_station")
    await make_place("Seocho police box", 37.4840, 127.0150, kind="police_box")
    await make_place("Far police box", 37.6, 127.1, kind="police_box")
    await make_place("Next-door CU", 37.4980, 127.0277)
    return place_id


@pytest.fixture
async def device(pool, store) -> DeviceCreds:
    return await make_device(pool, store)


async def _incidents(pool):
    return await pool.fetch("SELECT * FROM incident ORDER BY received_at")


async def _security_kinds(pool):
    return [r["kind"] for r in await pool.fetch("SELECT kind FROM security_event ORDER BY id")]


# --- panics -------------------------------------------------------------------------------


async def test_panic_creates_incident_at_the_store_with_nearest_police(client, pool, device):
    signal_id = uuid.uuid4()
    r = await send_signal(
        client, device, {"type": "panic", "signal_id": str(signal_id), "battery_pct": 80}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "new"
    assert body["district"] == {"code": "11680", "name": "Gangnam-gu"}
    assert body["store"]["name"] == "GS25 Gangnam Station"
    assert body["store"]["address"] == "396 Gangnam-daero, Seoul"
    assert body["store"]["phone"] == "02-555-0100"
    assert (body["store"]["lat"], body["store"]["lon"]) == pytest.approx(STORE)
    police = body["nearest_police"]
    assert [p["name"] for p in police] == [
        "Yeoksam police box",
        "Gangnam police station",
        "Seocho police box",
    ]
    assert [p["distance_m"] for p in police] == sorted(p["distance_m"] for p in police)
    assert body["warnings"] == []

    [inc] = await _incidents(pool)
    assert str(inc["id"]) == body["incident_id"]
    assert inc["source"] == "button"
    assert inc["trigger"] == "panic"
    assert inc["silent"] is False
    assert inc["device_id"] == device.id
    assert inc["safe_place_id"] == device.place_id
    assert inc["client_alert_id"] == signal_id
    assert inc["member_id"] is None
    assert inc["battery_pct"] == 80
    lat, lon = await pool.fetchrow(
        "SELECT ST_Y(location::geometry), ST_X(location::geometry) FROM incident"
    )
    assert (lat, lon) == pytest.approx(STORE)
    [ev] = await pool.fetch("SELECT * FROM incident_event")
    assert ev["kind"] == "reported"
    assert ev["actor"] == f"device:{device.id}"
    assert ev["data"]["signal_id"] == str(signal_id)
    [ob] = await pool.fetch("SELECT * FROM outbox")
    assert ob["incident_id"] == inc["id"]
    assert ob["topic"] == "incident.created"
    assert ob["payload"]["source"] == "button"
    dev = await pool.fetchrow("SELECT * FROM device WHERE id = $1", device.id)
    assert dev["last_seen_at"] is not None
    assert dev["battery_pct"] == 80


async def test_silent_panic_is_a_silent_incident(client, pool, device):
    r = await send_signal(client, device, {"type": "silent_panic", "signal_id": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    [inc] = await _incidents(pool)
    assert inc["trigger"] == "silent_panic"
    assert inc["silent"] is True


async def test_retried_panic_with_same_signal_id_is_one_incident(client, pool, device):
    body = {"type": "panic", "signal_id": str(uuid.uuid4())}
    first = await send_signal(client, device, body)
    again = await send_signal(client, device, body)  # new nonce and signature, same press
    assert first.status_code == 201
    assert again.status_code == 200, again.text
    assert again.json()["incident_id"] == first.json()["incident_id"]
    assert again.json()["store"] == first.json()["store"]
    assert len(await _incidents(pool)) == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await pool.fetchval("SELECT count(*) FROM incident_event") == 1


async def test_concurrent_retries_of_one_press_race_to_one_incident(client, pool, device):
    body = {"type": "panic", "signal_id": str(uuid.uuid4())}
    results = await asyncio.gather(*(send_signal(client, device, body) for _ in range(6)))
    assert sorted(r.status_code for r in results) == [200] * 5 + [201]
    assert len({r.json()["incident_id"] for r in results}) == 1
    assert len(await _incidents(pool)) == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_presses_while_the_alert_is_open_join_it_and_a_press_after_closing_is_new(
    client, pool, device
):
    first = await send_signal(client, device, {"type": "panic", "signal_id": str(uuid.uuid4())})
    assert first.status_code == 201
    # A clerk pressing again (new signal_ids, or none) while police are on the way: one incident.
    for body in ({"type": "panic", "signal_id": str(uuid.uuid4())}, {"type": "silent_panic"}):
        again = await send_signal(client, device, body)
        assert again.status_code == 200, again.text
        assert again.json()["incident_id"] == first.json()["incident_id"]
        assert "folded_into_open_alert" in [w["code"] for w in again.json()["warnings"]]
    [incident] = await _incidents(pool)
    assert "repeated" in incident["flags"]
    assert (
        await pool.fetchval("SELECT count(*) FROM incident_event WHERE kind = 'repeat_report'") == 1
    ), "at most one timeline entry per 10 s"
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    later = await send_signal(client, device, {"type": "panic", "signal_id": str(uuid.uuid4())})
    assert later.status_code == 201
    assert later.json()["incident_id"] != first.json()["incident_id"]


async def test_signal_id_reused_after_its_incident_closed_long_ago_raises_a_new_incident(
    client, pool, device
):
    body = {"type": "panic", "signal_id": str(uuid.uuid4())}
    first = await send_signal(client, device, body)
    await pool.execute(
        "UPDATE incident SET status = 'resolved', closed_at = now(),"
        " received_at = now() - interval '2 hours'"
    )
    again = await send_signal(client, device, body)
    assert again.status_code == 201, again.text
    assert again.json()["incident_id"] != first.json()["incident_id"]
    assert [w["code"] for w in again.json()["warnings"]] == ["signal_id_reused"]
    new = await pool.fetchrow(
        "SELECT * FROM incident WHERE id = $1", uuid.UUID(again.json()["incident_id"])
    )
    assert "signal_id_reused" in new["flags"]


async def test_sloppy_panic_fields_are_dropped_and_warned_never_refused(client, pool, device):
    r = await send_signal(
        client,
        device,
        {"type": "panic", "battery_pct": 250, "signal_id": "not-a-uuid", "colour": "red"},
    )
    assert r.status_code == 201, r.text
    warnings = {(w["code"], w["field"]) for w in r.json()["warnings"]}
    assert warnings == {
        ("unknown_field", "colour"),
        ("battery_pct_invalid", "battery_pct"),
        ("signal_id_invalid", "signal_id"),
    }
    [inc] = await _incidents(pool)
    assert set(inc["flags"]) == {"unknown_field", "battery_pct_invalid", "signal_id_invalid"}
    assert set(r.json()["flags"]) == set(inc["flags"])
    assert inc["battery_pct"] is None


# --- rejections -----------------------------------------------------------------------------


async def _assert_rejected(pool, r, kind: str, detail: str) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {"error": "DeviceUnauthorized", "detail": detail}
    assert abs(int(r.headers["X-Ansim-Server-Time"]) - time.time()) < 5
    assert await _security_kinds(pool) == [kind]
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


async def test_wrong_signature_is_refused_and_recorded(client, pool, device):
    r = await send_signal(client, device, {"type": "panic"}, secret="0" * 64)
    await _assert_rejected(pool, r, "device_bad_signature", "signature rejected")
    ev = await pool.fetchrow("SELECT * FROM security_event")
    assert ev["device_id"] == device.id
    assert str(ev["source_ip"]) == "127.0.0.1"


async def test_body_changed_after_signing_is_refused(client, pool, device):
    headers = sign_request(device.secret, b'{"type":"test"}')
    r = await client.post(device.url, content=b'{"type":"panic"}', headers=headers)
    await _assert_rejected(pool, r, "device_bad_signature", "signature rejected")


@pytest.mark.parametrize("offset", [-301, 301, -86400])
async def test_timestamp_outside_the_window_is_refused(client, pool, device, offset):
    r = await send_signal(client, device, {"type": "panic"}, timestamp=int(time.time()) + offset)
    await _assert_rejected(
        pool, r, "device_stale_timestamp", "timestamp outside the accepted window"
    )


@pytest.mark.parametrize("offset", [-250, 250])
async def test_timestamp_inside_the_window_is_accepted(client, device, offset):
    r = await send_signal(
        client, device, {"type": "heartbeat"}, timestamp=int(time.time()) + offset
    )
    assert r.status_code == 200, r.text


async def test_replayed_request_is_refused(client, pool, device):
    raw = b'{"type":"panic","signal_id":"6b1f2c1e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"}'
    headers = sign_request(device.secret, raw)
    first = await client.post(device.url, content=raw, headers=headers)
    assert first.status_code == 201
    replay = await client.post(device.url, content=raw, headers=headers)
    assert replay.status_code == 401
    assert replay.json() == {"error": "DeviceUnauthorized", "detail": "nonce already used"}
    assert await _security_kinds(pool) == ["device_nonce_reused"]
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1


async def test_forged_request_cannot_burn_a_nonce(client, pool, device):
    raw = b'{"type":"heartbeat"}'
    nonce = "attacker-guessed-nonce-01"
    forged = sign_request("f" * 64, raw, nonce=nonce)
    assert (await client.post(device.url, content=raw, headers=forged)).status_code == 401
    real = sign_request(device.secret, raw, nonce=nonce)
    assert (await client.post(device.url, content=raw, headers=real)).status_code == 200


async def test_unknown_device_is_refused_like_a_bad_signature(client, pool, store):
    ghost = DeviceCreds(uuid.uuid4(), "a" * 64, store)
    r = await send_signal(client, ghost, {"type": "panic"})
    await _assert_rejected(pool, r, "device_unknown", "signature rejected")
    assert await pool.fetchval("SELECT device_id FROM security_event") == ghost.id


async def test_malformed_device_id_is_a_401_not_a_422(client, pool, device):
    r = await send_signal(client, device, {"type": "panic"}, url="/v1/devices/not-a-uuid/signals")
    await _assert_rejected(pool, r, "device_unknown", "signature rejected")
    ev = await pool.fetchrow("SELECT * FROM security_event")
    assert ev["device_id"] is None
    assert ev["detail"] == {"device_ref": "not-a-uuid"}


async def test_disabled_device_is_refused(client, pool, store):
    device = await make_device(pool, store, enabled=False)
    r = await send_signal(client, device, {"type": "panic"})
    await _assert_rejected(pool, r, "device_disabled", "signature rejected")


@pytest.mark.parametrize(
    "drop_or_break",
    [
        ("X-Ansim-Signature", None),
        ("X-Ansim-Nonce", None),
        ("X-Ansim-Timestamp", None),
        ("X-Ansim-Nonce", "short"),
        ("X-Ansim-Nonce", "has spaces in it, not allowed"),
        ("X-Ansim-Timestamp", "-1700000000"),
        ("X-Ansim-Signature", "zz" * 32),
    ],
)
async def test_missing_or_malformed_headers_are_refused(client, pool, device, drop_or_break):
    raw = b'{"type":"panic"}'
    headers = sign_request(device.secret, raw)
    name, value = drop_or_break
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    r = await client.post(device.url, content=raw, headers=headers)
    await _assert_rejected(pool, r, "device_bad_headers", "missing or malformed signature headers")


# --- rotation -------------------------------------------------------------------------------


async def test_previous_secret_works_during_rotation_and_not_after(client, pool, device):
    creds, until = await service.rotate_secret(pool, device_id=device.id, grace_seconds=3600)
    assert until is not None
    old = await send_signal(client, device, {"type": "heartbeat"})
    new = await send_signal(client, device, {"type": "heartbeat"}, secret=creds.secret)
    assert (old.status_code, new.status_code) == (200, 200)

    await pool.execute("UPDATE device SET previous_secret_until = now() - interval '1 second'")
    expired = await send_signal(client, device, {"type": "heartbeat"})
    await _assert_rejected(pool, expired, "device_bad_signature", "signature rejected")
    assert (
        await send_signal(client, device, {"type": "heartbeat"}, secret=creds.secret)
    ).status_code == 200


async def test_panic_signed_with_previous_secret_records_which_key(client, pool, device):
    await service.rotate_secret(pool, device_id=device.id, grace_seconds=60)
    r = await send_signal(client, device, {"type": "panic"})
    assert r.status_code == 201
    assert await pool.fetchval("SELECT data->>'key' FROM incident_event") == "previous"


async def test_rotation_without_grace_revokes_the_old_secret_at_once(client, pool, device):
    await service.rotate_secret(pool, device_id=device.id, grace_seconds=0)
    r = await send_signal(client, device, {"type": "panic"})
    await _assert_rejected(pool, r, "device_bad_signature", "signature rejected")


# --- health, test, cancel -------------------------------------------------------------------


async def test_heartbeat_updates_health_and_clears_an_offline_report(client, pool, device):
    await pool.execute("UPDATE device SET offline_reported_at = now() - interval '1 hour'")
    r = await send_signal(
        client, device, {"type": "heartbeat", "battery_pct": 64, "firmware": "1.2.0"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "heartbeat"
    assert abs(r.json()["server_time"] - time.time()) < 5
    dev = await pool.fetchrow("SELECT * FROM device")
    assert dev["last_heartbeat_at"] is not None
    assert dev["last_seen_at"] == dev["last_heartbeat_at"]
    assert dev["battery_pct"] == 64
    assert dev["offline_reported_at"] is None
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


async def test_low_battery_updates_battery_without_counting_as_heartbeat(client, pool, device):
    r = await send_signal(client, device, {"type": "low_battery", "battery_pct": 7})
    assert r.status_code == 200, r.text
    dev = await pool.fetchrow("SELECT * FROM device")
    assert dev["battery_pct"] == 7
    assert dev["last_heartbeat_at"] is None
    assert dev["last_seen_at"] is not None


async def test_tamper_is_recorded_on_the_device_and_as_a_security_event(client, pool, device):
    r = await send_signal(client, device, {"type": "tamper"})
    assert r.status_code == 200, r.text
    assert await pool.fetchval("SELECT tampered_at FROM device") is not None
    assert await _security_kinds(pool) == ["device_tamper"]
    assert await pool.fetchval("SELECT device_id FROM security_event") == device.id


async def test_test_press_is_recorded_creates_no_incident_and_names_the_store(client, pool, device):
    r = await send_signal(client, device, {"type": "test"})
    assert r.status_code == 200, r.text
    assert r.json()["store"]["name"] == "GS25 Gangnam Station"
    assert await pool.fetchval("SELECT last_test_at FROM device") is not None
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


def _as_the_store_sees_it(r) -> bytes:
    """The answer with its per-request values blanked: what tells a cancel from a duress (if
    anything did) is left, byte for byte."""
    assert r.status_code == 200, r.text
    body = r.json()
    for key in ("device_id", "received_at", "server_time", "incident_id"):
        if body.get(key) is not None:
            body[key] = "…"
    return orjson.dumps(body)


async def _events(pool, incident_id=None):
    rows = await pool.fetch(
        "SELECT kind, actor, data FROM incident_event"
        " WHERE $1::uuid IS NULL OR incident_id = $1 ORDER BY id",
        incident_id,
    )
    return rows


async def _outbox_kinds(pool):
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = 'incident.updated' ORDER BY id"
    )
    return [r["payload"]["kind"] for r in rows]


async def test_a_store_cancel_asks_a_dispatcher_and_never_closes_the_incident(
    client, pool, device, make_staff
):
    panic = await send_signal(client, device, {"type": "panic", "signal_id": str(uuid.uuid4())})
    r = await send_signal(client, device, {"type": "cancel"})
    assert r.status_code == 200, r.text
    # The store sees what it always saw after a cancel.
    assert list(r.json()) == [
        "device_id", "type", "received_at", "server_time", "incident_id", "status", "cancelled"
    ]  # fmt: skip
    assert r.json()["incident_id"] == panic.json()["incident_id"]
    assert (r.json()["type"], r.json()["status"], r.json()["cancelled"]) == (
        "cancel", "cancelled", True
    )  # fmt: skip
    inc = await pool.fetchrow("SELECT * FROM incident")
    assert (inc["status"], inc["closed_at"], inc["duress"]) == ("new", None, False)
    assert "cancel_requested" in inc["flags"]
    ev = (await _events(pool))[-1]
    assert ev["kind"] == "cancel_requested"
    assert ev["actor"] == f"device:{device.id}"
    assert ev["data"]["store"]["phone"] == "02-555-0100"
    # The console hears of it with the store's phone, to call the store and verify.
    (row,) = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = 'incident.updated' ORDER BY id"
    )
    assert row["payload"]["kind"] == "cancel_requested"
    assert row["payload"]["store"] == {
        "id": str(device.place_id),
        "name": "GS25 Gangnam Station",
        "phone": "02-555-0100",
        "address": "396 Gangnam-daero, Seoul",
    }

    # A dispatcher closes it, through the console's ordinary status endpoint.
    district = await pool.fetchval("SELECT id FROM district")
    dispatcher = await make_staff("dispatcher", district_ids=(district,))
    closed = await client.post(
        f"/v1/console/incidents/{inc['id']}/status",
        headers={"Authorization": f"Bearer {dispatcher.token}"},
        json={"status": "false_alarm"},
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "false_alarm"
    assert "cancel_requested" in closed.json()["flags"]
    assert await pool.fetchval("SELECT closed_at IS NOT NULL FROM incident")


async def test_a_cancel_after_acknowledgement_is_a_request_too_and_looks_the_same(
    client, pool, device
):
    await send_signal(client, device, {"type": "panic"})
    fresh = await send_signal(client, device, {"type": "cancel"})
    await pool.execute("UPDATE incident SET status = 'acknowledged', acknowledged_at = now()")
    r = await send_signal(client, device, {"type": "cancel"})
    assert _as_the_store_sees_it(r) == _as_the_store_sees_it(fresh)
    inc = await pool.fetchrow("SELECT * FROM incident")
    assert (inc["status"], inc["closed_at"]) == ("acknowledged", None)
    assert list(inc["flags"]).count("cancel_requested") == 1
    assert await _outbox_kinds(pool) == ["cancel_requested", "cancel_requested"]


# --- duress ---------------------------------------------------------------------------------


@pytest.fixture
async def other_store_cancel(client, pool, store):
    """A real cancel's answer at another button of the same store, to compare with."""
    other = await make_device(pool, store, label="other")
    await send_signal(client, other, {"type": "panic"})
    return await send_signal(client, other, {"type": "cancel"})


async def _duress_state(pool, incident_id):
    return await pool.fetchrow(
        "SELECT status, closed_at, duress, silent, flags FROM incident WHERE id = $1",
        uuid.UUID(incident_id),
    )


async def test_the_duress_signal_answers_like_a_cancel_and_escalates_silently(
    client, pool, device, other_store_cancel
):
    panic = await send_signal(client, device, {"type": "panic"})
    r = await send_signal(client, device, {"type": "duress"})
    assert _as_the_store_sees_it(r) == _as_the_store_sees_it(other_store_cancel)
    assert r.json()["incident_id"] == panic.json()["incident_id"]
    inc = await _duress_state(pool, panic.json()["incident_id"])
    assert (inc["status"], inc["closed_at"], inc["duress"], inc["silent"]) == (
        "new", None, True, True
    )  # fmt: skip
    assert "cancel_requested" not in inc["flags"]  # nobody is asked to call the store
    ev = (await _events(pool, uuid.UUID(panic.json()["incident_id"])))[-1]
    assert (ev["kind"], ev["data"]["via"]) == ("duress", "signal")
    # The same outbox kind as a member's duress: dispatch escalates and pages alike.
    assert (await _outbox_kinds(pool))[-1] == "duress"


async def test_a_duress_after_a_cancel_request_drops_the_call_the_store_flag(
    client, pool, device, other_store_cancel
):
    panic = await send_signal(client, device, {"type": "panic"})
    await send_signal(client, device, {"type": "cancel"})
    r = await send_signal(client, device, {"type": "duress"})
    assert _as_the_store_sees_it(r) == _as_the_store_sees_it(other_store_cancel)
    inc = await _duress_state(pool, panic.json()["incident_id"])
    assert inc["duress"] and "cancel_requested" not in inc["flags"]
    # A further cancel under duress is only noted: the console is not told to call the store.
    again = await send_signal(client, device, {"type": "cancel"})
    assert _as_the_store_sees_it(again) == _as_the_store_sees_it(other_store_cancel)
    inc = await _duress_state(pool, panic.json()["incident_id"])
    assert inc["status"] == "new" and "cancel_requested" not in inc["flags"]
    assert (await _events(pool))[-1]["kind"] == "device_cancel"
    assert (await _outbox_kinds(pool))[-1] == "duress"


async def test_a_duress_with_no_open_alert_raises_a_silent_one(client, pool, device):
    nothing = await send_signal(client, device, {"type": "cancel"})
    r = await send_signal(client, device, {"type": "duress"})
    assert _as_the_store_sees_it(r) == _as_the_store_sees_it(nothing)
    assert r.json()["incident_id"] is None
    inc = await pool.fetchrow("SELECT * FROM incident")
    assert (inc["trigger"], inc["duress"], inc["silent"], inc["status"]) == (
        "duress", True, True, "new"
    )  # fmt: skip
    assert inc["safe_place_id"] == device.place_id
    assert await _outbox_kinds(pool) == ["duress"]


@pytest.fixture
async def double_cancel_device(pool, store) -> DeviceCreds:
    device = await make_device(pool, store, label="double")
    await service.set_double_cancel(pool, device_id=device.id, seconds=5)
    return device


async def test_a_double_cancel_is_duress_and_answers_like_a_cancel(
    client, pool, double_cancel_device
):
    device = double_cancel_device
    panic = await send_signal(client, device, {"type": "panic"})
    first = await send_signal(client, device, {"type": "cancel", "signal_id": str(uuid.uuid4())})
    second = await send_signal(client, device, {"type": "cancel", "signal_id": str(uuid.uuid4())})
    assert _as_the_store_sees_it(second) == _as_the_store_sees_it(first)
    inc = await _duress_state(pool, panic.json()["incident_id"])
    assert (inc["status"], inc["duress"]) == ("new", True)
    assert "cancel_requested" not in inc["flags"]
    ev = (await _events(pool))[-1]
    assert (ev["kind"], ev["data"]["via"]) == ("duress", "double_cancel")
    assert await _outbox_kinds(pool) == ["cancel_requested", "duress"]


async def test_a_second_cancel_after_the_window_is_a_normal_cancel_request(
    client, pool, double_cancel_device
):
    device = double_cancel_device
    await send_signal(client, device, {"type": "panic"})
    await send_signal(client, device, {"type": "cancel"})
    await pool.execute("UPDATE device SET last_cancel_at = last_cancel_at - interval '6 seconds'")
    r = await send_signal(client, device, {"type": "cancel"})
    assert r.json()["cancelled"] is True
    inc = await pool.fetchrow("SELECT * FROM incident")
    assert (inc["duress"], inc["status"]) == (False, "new")
    assert "cancel_requested" in inc["flags"]
    assert await _outbox_kinds(pool) == ["cancel_requested", "cancel_requested"]


async def test_a_retried_cancel_is_not_a_second_press_and_plain_devices_have_no_double_cancel(
    client, pool, device, double_cancel_device
):
    await send_signal(client, double_cancel_device, {"type": "panic"})
    press = {"type": "cancel", "signal_id": str(uuid.uuid4())}
    await send_signal(client, double_cancel_device, press)
    await send_signal(client, double_cancel_device, press)  # the same press, retried
    await send_signal(client, device, {"type": "panic"})
    await send_signal(client, device, {"type": "cancel"})
    await send_signal(client, device, {"type": "cancel"})
    assert await pool.fetchval("SELECT count(*) FROM incident WHERE duress") == 0


async def test_a_duress_while_redis_is_down_is_refused_like_a_cancel_but_acted_on(
    app, client, pool, device
):
    await send_signal(client, device, {"type": "panic"})
    working = app.state.redis
    app.state.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        cancel = await send_signal(client, device, {"type": "cancel"})
        duress = await send_signal(client, device, {"type": "duress"})
    finally:
        await app.state.redis.aclose()
        app.state.redis = working
    assert (cancel.status_code, duress.status_code) == (503, 503)
    assert cancel.json() == duress.json()
    inc = await pool.fetchrow("SELECT * FROM incident")
    assert inc["duress"] is True and "cancel_requested" not in inc["flags"]


async def test_cancel_does_not_reach_an_incident_outside_the_window(client, pool, device):
    await send_signal(client, device, {"type": "panic"})
    await pool.execute("UPDATE incident SET received_at = now() - interval '1 hour'")
    r = await send_signal(client, device, {"type": "cancel"})
    assert r.status_code == 200
    assert r.json() == {**r.json(), "incident_id": None, "cancelled": False}
    assert await pool.fetchval("SELECT status FROM incident") == "new"


# --- strict bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"heartbeat","colour":"red"}',
        b'{"type":"heartbeat","battery_pct":101}',
        b'{"type":"heartbeat","battery_pct":"50"}',
        b'{"type":"test","signal_id":"nope"}',
        b'{"type":"self_destruct"}',
        b'{"battery_pct":50}',
        b'{"type":"PANIC"}',
        b"[1,2,3]",
        b"not json",
        b'{"type":"heartbeat","battery_pct":NaN}',
        b"",
    ],
)
async def test_unusable_body_is_a_422_with_the_stable_error_body(client, pool, device, raw):
    r = await send_signal(client, device, raw)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ValidationError"
    assert r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


# --- Redis down -----------------------------------------------------------------------------


async def test_panic_is_accepted_and_flagged_when_redis_is_down_other_signals_wait(
    app, client, pool, device
):
    working = app.state.redis
    # Nothing listens on port 1: every Redis call fails at once, as in an outage.
    app.state.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        panic = await send_signal(client, device, {"type": "panic"})
        heartbeat = await send_signal(client, device, {"type": "heartbeat"})
    finally:
        await app.state.redis.aclose()
        app.state.redis = working
    assert panic.status_code == 201, panic.text
    assert "nonce_unchecked" in (await pool.fetchval("SELECT flags FROM incident"))
    assert heartbeat.status_code == 503
    assert heartbeat.json()["error"] == "ServiceUnavailable"


@pytest.mark.parametrize("ref", ["a%00b", "%FF%FE", "x" * 300, "%E2%82%AC"])
async def test_hostile_device_ref_is_a_recorded_401_never_a_500(client, pool, device, ref):
    r = await send_signal(client, device, {"type": "panic"}, url=f"/v1/devices/{ref}/signals")
    assert r.status_code == 401, r.text
    assert await _security_kinds(pool) == ["device_unknown"]
    stored = await pool.fetchval("SELECT detail->>'device_ref' FROM security_event")
    assert len(stored) <= 80
    assert "\x00" not in stored


async def test_openapi_documents_the_signal_endpoint_with_its_headers(client):
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/devices/{device_id}/signals"]["post"]
    headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
    assert headers == {"X-Ansim-Timestamp", "X-Ansim-Nonce", "X-Ansim-Signature"}
    assert "requestBody" in op
    assert {"401", "422"} <= set(op["responses"])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"panic","a\\u0000b":1}',
        b'{"type":"panic","\\ud800":"\\udfff"}',
        b'{"type":"panic","battery_pct":NaN}',
        b'{"type":"panic","note":"\xff\xfe"}',
        b'{"type":"panic","firmware":"1.0\\u0000"}',
    ],
)
async def test_hostile_bytes_in_a_panic_still_raise_the_incident(client, pool, device, raw):
    r = await send_signal(client, device, raw)
    assert r.status_code == 201, r.text
    assert r.json()["warnings"]
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1
