"""Home sensors: every rule of the arming state against real PostgreSQL and Redis (the entry
delay's due time is in PostgreSQL and a dispatcher's sweep raises the alarm)."""

from __future__ import annotations

import uuid

import pytest

from app.homes import service
from app.receiver import accounts
from tests.homes.helpers import ADDRESS, DISTRICT, HOME_LAT, HOME_LON, make_home, signal


@pytest.fixture
async def her(make_member):
    return await make_member()


@pytest.fixture
async def panel_account(pool, home):
    """An alarm panel's account at her home too (app/receiver/)."""
    async with pool.acquire() as conn:
        return await accounts.create_account(
            conn, home_id=home.id, account="7C01", supervision_s=600, label="flat 302 panel"
        )


@pytest.fixture
async def home(pool, make_district, her):
    await make_district(*DISTRICT)
    return await make_home(pool, her.id)


async def _incidents(pool):
    return await pool.fetch(
        "SELECT i.*, ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon,"
        " d.code AS district_code FROM incident i LEFT JOIN district d ON d.id = i.district_id"
        " ORDER BY received_at"
    )


async def _expire_entry_delay(pool) -> None:
    """As if the entry delay (30 s) had passed."""
    await pool.execute(
        "UPDATE home SET entry_due_at = now() - interval '1 second' WHERE entry_due_at IS NOT NULL"
    )


async def _arm(client, her, home, mode="away"):
    r = await client.post(f"/v1/me/homes/{home.id}/arm", json={"mode": mode}, headers=her.headers)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == mode
    return r


async def _disarm(client, her, home, pin):
    return await client.post(
        f"/v1/me/homes/{home.id}/disarm", json={"pin": pin}, headers=her.headers
    )


async def test_a_door_opened_while_armed_away_raises_an_incident_when_the_entry_delay_expires(
    client, pool, settings, her, home
):
    await _arm(client, her, home)
    door_press = str(uuid.uuid4())
    r = await signal(client, home.door, {"type": "open", "signal_id": door_press})
    assert r.status_code == 200 and r.json()["type"] == "open"
    # The delay runs: its due time is in PostgreSQL, no incident yet.
    due = await pool.fetchval("SELECT entry_due_at - now() FROM home")
    assert 25 < due.total_seconds() <= settings.home_entry_delay_s
    assert await service.raise_expired_entries(pool, settings) == 0
    assert await _incidents(pool) == []

    await _expire_entry_delay(pool)
    assert await service.raise_expired_entries(pool, settings) == 1
    (inc,) = await _incidents(pool)
    assert inc["source"] == "sensor" and inc["trigger"] == "entry_delay_expired"
    assert inc["home_id"] == home.id and inc["device_id"] == home.door.id
    assert (inc["lat"], inc["lon"]) == pytest.approx((HOME_LAT, HOME_LON))
    assert inc["district_code"] == DISTRICT[0]
    assert not inc["silent"] and inc["member_id"] is None
    # Through the normal path: the reported event and an outbox row for dispatch.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE incident_id = $1 AND topic = 'incident.created'",
            inc["id"],
        )
        == 1
    )
    reported = await pool.fetchval(
        "SELECT data FROM incident_event WHERE incident_id = $1 AND kind = 'reported'", inc["id"]
    )
    assert reported["address"] == ADDRESS and reported["device_kind"] == "door"
    # Raised once: the next sweep (another dispatcher) finds nothing due.
    assert await service.raise_expired_entries(pool, settings) == 0
    # A retry of the same door press starts no second delay.
    await signal(client, home.door, {"type": "open", "signal_id": door_press})
    assert await pool.fetchval("SELECT entry_due_at FROM home") is None


async def test_her_pin_within_the_entry_delay_disarms_and_nothing_is_raised(
    client, pool, settings, her, home
):
    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    r = await _disarm(client, her, home, her.pin)
    assert r.status_code == 200 and r.json()["state"] == "disarmed"
    await _expire_entry_delay(pool)  # (nothing is due any more)
    assert await service.raise_expired_entries(pool, settings) == 0
    assert await _incidents(pool) == []
    # Disarmed, the door is just a door.
    assert (await signal(client, home.door, {"type": "open"})).status_code == 200
    assert await pool.fetchval("SELECT entry_due_at FROM home") is None


async def test_a_wrong_pin_is_refused_and_the_entry_delay_runs_on(
    client, pool, settings, her, home
):
    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    r = await _disarm(client, her, home, "0000")
    assert r.status_code == 403 and r.json()["error"] == "WrongPin"
    assert await pool.fetchval("SELECT state FROM home") == "away"
    assert (
        await pool.fetchval("SELECT count(*) FROM security_event WHERE kind = 'wrong_disarm_pin'")
        == 1
    )
    await _expire_entry_delay(pool)
    assert await service.raise_expired_entries(pool, settings) == 1


def _normalised(response) -> tuple[int, dict, dict]:
    body = dict(response.json())
    body.pop("changed_at"), body.pop("home_id")
    headers = {
        k: v
        for k, v in response.headers.items()
        if k not in ("date", "content-length", "x-request-id")
    }
    return response.status_code, body, headers


async def test_her_duress_pin_disarms_as_usual_and_raises_a_silent_incident(
    client, pool, make_member, make_district
):
    await make_district(*DISTRICT)
    a, b = await make_member(), await make_member()
    home_a, home_b = await make_home(pool, a.id), await make_home(pool, b.id)
    answers = []
    for member, home, pin in ((a, home_a, a.pin), (b, home_b, b.duress_pin)):
        await _arm(client, member, home)
        await signal(client, home.door, {"type": "open"})
        answers.append(await _disarm(client, member, home, pin))
    assert answers[0].status_code == 200
    assert _normalised(answers[0]) == _normalised(answers[1])
    # Both homes are disarmed, the delays cancelled, and her app shows the same.
    views = []
    for member in (a, b):
        r = await client.get("/v1/me/homes", headers=member.headers)
        (h,) = r.json()["homes"]
        views.append((h["state"], h["entry_delay_running"], sorted(h)))
    assert (
        views[0]
        == views[1]
        == (
            "disarmed",
            False,
            sorted(
                ["id", "label", "address", "state", "changed_at", "entry_delay_running", "devices"]
            ),
        )
    )
    # Only b's disarm raised an incident: silent, duress, at her home, escalating.
    (inc,) = await _incidents(pool)
    assert inc["home_id"] == home_b.id and inc["source"] == "sensor"
    assert inc["trigger"] == "duress_disarm" and inc["silent"] and inc["duress"]
    assert inc["member_id"] is None  # never among her own alerts on her phone
    kinds = await pool.fetch(
        "SELECT payload->>'kind' AS k FROM outbox WHERE incident_id = $1 ORDER BY id", inc["id"]
    )
    assert [r["k"] for r in kinds] == ["reported", "duress"]
    history = await pool.fetch(
        "SELECT kind, duress FROM home_arming_event WHERE home_id = $1 ORDER BY id", home_b.id
    )
    assert [(r["kind"], r["duress"]) for r in history] == [
        ("arm_away", False),
        ("entry_started", False),
        ("disarm", True),
    ]


async def test_the_keypad_arms_and_disarms_signed_and_its_duress_pin_answers_like_her_pin(
    client, pool, her, home
):
    r = await signal(client, home.keypad, {"type": "arm_away"})
    assert r.status_code == 200 and r.json()["home"]["state"] == "away"
    assert await pool.fetchval("SELECT state FROM home") == "away"
    normal = await signal(client, home.keypad, {"type": "disarm", "pin": her.pin})
    assert normal.status_code == 200 and normal.json()["home"]["state"] == "disarmed"
    await signal(client, home.keypad, {"type": "arm_night"})
    assert await pool.fetchval("SELECT state FROM home") == "night"
    duress = await signal(client, home.keypad, {"type": "disarm", "pin": her.duress_pin})

    def shape(resp):
        body = resp.json()
        return (
            resp.status_code,
            sorted(body),
            body["type"],
            body["home"]["state"],
            sorted(body["home"]),
        )

    assert shape(normal) == shape(duress)
    assert await pool.fetchval("SELECT state FROM home") == "disarmed"
    (inc,) = await _incidents(pool)
    assert inc["duress"] and inc["silent"] and inc["device_id"] == home.keypad.id
    wrong = await signal(client, home.keypad, {"type": "disarm", "pin": "0000"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "WrongPin"
    # Bad input is a 422 with the stable body: a disarm without a PIN, a door that "arms".
    for sensor, body in ((home.keypad, {"type": "disarm"}), (home.door, {"type": "arm_away"})):
        r = await signal(client, sensor, body)
        assert r.status_code == 422 and r.json()["error"] == "ValidationError"


async def test_the_in_home_button_is_an_immediate_incident_whatever_the_state(
    client, pool, her, home
):
    press = str(uuid.uuid4())
    r = await signal(client, home.button, {"type": "panic", "signal_id": press, "battery_pct": 80})
    assert r.status_code == 201, r.text
    incident_id = r.json()["incident_id"]
    (inc,) = await _incidents(pool)
    assert str(inc["id"]) == incident_id and inc["trigger"] == "home_panic"
    assert inc["home_id"] == home.id and inc["device_id"] == home.button.id
    # A retry of the same press (new nonce) is the same incident.
    again = await signal(client, home.button, {"type": "panic", "signal_id": press})
    assert again.status_code == 200 and again.json()["incident_id"] == incident_id
    assert len(await _incidents(pool)) == 1


async def test_night_mode_has_no_entry_delay_for_the_door(client, pool, settings, her, home):
    await _arm(client, her, home, "night")
    # Motion at night is her, moving about: nothing.
    assert (await signal(client, home.motion, {"type": "motion"})).status_code == 200
    assert await _incidents(pool) == []
    assert (await signal(client, home.door, {"type": "open"})).status_code == 200
    (inc,) = await _incidents(pool)
    assert inc["trigger"] == "door_open_night" and inc["device_id"] == home.door.id
    assert await pool.fetchval("SELECT entry_due_at FROM home") is None


async def test_arming_is_hers_alone_and_bad_input_is_a_4xx(client, pool, make_member, her, home):
    other = await make_member()
    r = await client.post(
        f"/v1/me/homes/{home.id}/arm", json={"mode": "away"}, headers=other.headers
    )
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    r = await _disarm(client, other, home, other.pin)
    assert r.status_code == 404
    r = await client.post(
        f"/v1/me/homes/{home.id}/arm", json={"mode": "holiday"}, headers=her.headers
    )
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"
    r = await client.post(f"/v1/me/homes/{home.id}/arm", json={"mode": "away"})
    assert r.status_code == 401
    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    r = await client.post(
        f"/v1/me/homes/{home.id}/arm", json={"mode": "night"}, headers=her.headers
    )
    assert r.status_code == 409 and r.json()["error"] == "Conflict"


async def test_wrong_pins_at_the_door_lock_her_pins_out_and_her_duress_pin_still_raises(
    client, pool, settings, her, home
):
    """The disarm is no way round the SOS cancel's lockout to guess her PIN: the wrong PINs
    count together, and locked out every PIN is refused alike (her duress PIN acted on)."""
    await _arm(client, her, home)
    for _ in range(settings.cancel_pin_lockout_after):
        assert (await _disarm(client, her, home, "0000")).status_code == 403
    right = await _disarm(client, her, home, her.pin)
    duress = await _disarm(client, her, home, her.duress_pin)
    assert right.status_code == duress.status_code == 429
    assert (
        right.json()
        == duress.json()
        == {
            "error": "PinLockedOut",
            "detail": "too many wrong PINs: disarming is locked for a while",
        }
    )
    assert int(right.headers["Retry-After"]) > 0
    assert await pool.fetchval("SELECT state FROM home") == "away"  # nothing disarmed
    (inc,) = await _incidents(pool)
    assert inc["trigger"] == "duress_disarm" and inc["duress"] and inc["silent"]
    # One counter with her SOS cancel: locked for that too.
    assert await pool.fetchval("SELECT pin_locked_until > now() FROM member") is True
    await pool.execute("UPDATE member SET pin_locked_until = now() - interval '1 second'")
    ok = await _disarm(client, her, home, her.pin)
    assert ok.status_code == 200
    assert await pool.fetchval("SELECT wrong_pin_count FROM member") == 0


async def test_erasing_her_account_erases_her_home_and_stops_its_sensors(client, pool, her, home):
    await signal(client, home.button, {"type": "panic"})
    r = await client.post("/v1/me/erase", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code == 409  # her home's alarm is still open
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    r = await client.post("/v1/me/erase", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code == 204, r.text
    row = await pool.fetchrow(
        "SELECT address, label, enabled, ST_Y(geog::geometry) AS lat FROM home"
    )
    assert (row["address"], row["label"], row["enabled"]) == ("(erased)", None, False)
    assert round(row["lat"], 2) == row["lat"]  # coarsened
    assert (await signal(client, home.door, {"type": "heartbeat"})).status_code == 401


async def test_erasure_leaves_her_address_and_arming_times_nowhere(
    client, pool, her, home, panel_account
):
    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    await _disarm(client, her, home, her.pin)
    await signal(client, home.button, {"type": "panic"})
    (incident_id,) = [r["id"] for r in await pool.fetch("SELECT id FROM incident")]
    assert await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE incident_id = $1 AND payload ? 'lat'", incident_id
    )
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    r = await client.post("/v1/me/erase", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code == 204, r.text
    assert await pool.fetchval("SELECT count(*) FROM home_arming_event") == 0
    events = await pool.fetchval("SELECT string_agg(data::text, ' ') FROM incident_event")
    assert ADDRESS not in events and "flat 302" not in events
    assert not await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE incident_id = $1 AND payload ? 'lat'", incident_id
    )
    # Her alarm panel stops too (its messages are answered DUH: tests/receiver/).
    assert await pool.fetchval("SELECT enabled FROM alarm_account") is False
    assert await pool.fetchval("SELECT label FROM alarm_account") is None
    assert set(await pool.fetch("SELECT DISTINCT enabled FROM device")) == {(False,)}


async def test_her_export_holds_her_homes(client, pool, her, home, panel_account):
    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    await _disarm(client, her, home, her.pin)
    r = await client.get("/v1/me/export", headers=her.headers)
    assert r.status_code == 200
    (exported,) = r.json()["homes"]
    assert exported["home_id"] == str(home.id) and exported["address"] == ADDRESS
    assert exported["label"] == "flat 302"
    assert exported["location"] == {"lat": HOME_LAT, "lon": HOME_LON}
    assert exported["district"]["code"] == DISTRICT[0]
    kinds = sorted(d["kind"] for d in exported["devices"])
    assert kinds == ["door", "home_button", "keypad", "motion", "panel"]
    assert [d["alarm_account"] for d in exported["devices"] if d["kind"] == "panel"] == ["7C01"]
    assert not {"secret", "previous_secret"} & set(exported["devices"][0])
    assert [(e["kind"], e["via"]) for e in exported["arming_history"]] == [
        ("arm_away", "app"),
        ("entry_started", "door"),
        ("disarm", "app"),
    ]
    assert exported["alarms"] == []


async def test_her_export_holds_a_duress_disarm_like_a_real_one_until_the_hold_is_over(
    client, pool, her, home, settings
):
    async def export():
        body = (await client.get("/v1/me/export", headers=her.headers)).json()
        return body["homes"][0]

    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    await _disarm(client, her, home, her.pin)
    real = await export()
    await pool.execute("DELETE FROM home_arming_event")
    await _arm(client, her, home)
    await signal(client, home.door, {"type": "open"})
    await _disarm(client, her, home, her.duress_pin)
    (incident_id,) = [r["id"] for r in await pool.fetch("SELECT id FROM incident")]
    held = await export()

    def shape(h):
        return [{k: v for k, v in e.items() if k != "at"} for e in h["arming_history"]], h["alarms"]

    assert shape(held) == shape(real)  # nothing tells her duress PIN apart
    # Closed, and closed for the hold: the whole truth.
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    assert shape(await export()) == shape(real)
    await pool.execute(
        "UPDATE incident SET closed_at = now() - make_interval(secs => $1::float8 + 60)",
        settings.cancel_hold_s,
    )
    after = await export()
    assert [(e["kind"], e["duress"], e["incident_id"]) for e in after["arming_history"]] == [
        ("arm_away", False, None),
        ("entry_started", False, None),
        ("disarm", True, str(incident_id)),
    ]
    assert [a["trigger"] for a in after["alarms"]] == ["duress_disarm"]
