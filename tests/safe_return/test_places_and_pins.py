"""Her saved places as a destination (a walk's and an escort's), and the walk's PIN answers under
the PIN lockout shared with her SOS cancels: wrong walk PINs lock her PINs out, a locked-out
PIN is refused whatever it is (her duress PIN still raises its silent SOS), her right PIN
resets the count."""

from __future__ import annotations

import uuid

import pytest

from tests.safe_return.test_sessions import A_BOX, B_BOX, HOME, START


@pytest.fixture
async def world(make_district, make_member, pool):
    a = await make_district("A", "District A", *A_BOX)
    await make_district("B", "District B", *B_BOX)
    return {"a": a, "her": await make_member("Jiyoung"), "other": await make_member("Minji")}


async def _place(client, member, label="home", at=HOME):
    r = await client.post(
        "/v1/me/places", json={"label": label, "lat": at[0], "lon": at[1]}, headers=member.headers
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_saved_place_is_a_walks_destination_with_its_label(client, world, pool):
    place = await _place(client, world["her"])
    r = await client.post(
        "/v1/safe-return",
        json={
            "destination_place_id": place["id"],
            "origin": {"lat": START[0], "lon": START[1]},
        },
        headers=world["her"].headers,
    )
    assert r.status_code == 201, r.text
    row = await pool.fetchrow(
        "SELECT destination_label, ST_Y(destination::geometry) AS lat FROM safe_return_session"
    )
    assert row["destination_label"] == "home" and row["lat"] == pytest.approx(HOME[0])


async def test_another_members_place_is_404_and_a_point_and_a_place_together_are_422(
    client, world, pool
):
    place = await _place(client, world["her"])
    r = await client.post(
        "/v1/safe-return",
        json={"destination_place_id": place["id"], "origin": {"lat": START[0], "lon": START[1]}},
        headers=world["other"].headers,
    )
    assert r.status_code == 404
    r = await client.post(
        "/v1/safe-return",
        json={
            "destination_place_id": place["id"],
            "destination": {"lat": HOME[0], "lon": HOME[1]},
            "origin": {"lat": START[0], "lon": START[1]},
        },
        headers=world["her"].headers,
    )
    assert r.status_code == 422 and r.json()["error"] == "DestinationInvalid"
    assert await pool.fetchval("SELECT count(*) FROM safe_return_session") == 0


async def test_saved_places_are_hers_unique_by_label_bounded_and_deletable(client, world, settings):
    home = await _place(client, world["her"])
    r = await client.post(
        "/v1/me/places",
        json={"label": "home", "lat": 37.51, "lon": 126.91},
        headers=world["her"].headers,
    )
    assert r.status_code == 409
    theirs = (await client.get("/v1/me/places", headers=world["other"].headers)).json()
    assert theirs == {"places": []}
    for n in range(settings.saved_places_max - 1):
        await _place(client, world["her"], label=f"p{n}")
    r = await client.post(
        "/v1/me/places",
        json={"label": "one too many", "lat": 37.51, "lon": 126.91},
        headers=world["her"].headers,
    )
    assert r.status_code == 422 and r.json()["error"] == "TooManySavedPlaces"
    assert (
        await client.delete(f"/v1/me/places/{home['id']}", headers=world["other"].headers)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/me/places/{home['id']}", headers=world["her"].headers)
    ).status_code == 204
    mine = (await client.get("/v1/me/places", headers=world["her"].headers)).json()["places"]
    assert len(mine) == settings.saved_places_max - 1


# --- the walk's PINs and the lockout -------------------------------------------------------------


async def _walk(client, her) -> str:
    r = await client.post(
        "/v1/safe-return",
        json={
            "destination": {"lat": HOME[0], "lon": HOME[1]},
            "origin": {"lat": START[0], "lon": START[1]},
        },
        headers=her.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["session_id"])


async def test_wrong_walk_pins_lock_her_pins_out_like_sos_cancels(client, world, pool, settings):
    her = world["her"]
    sid = await _walk(client, her)
    for n in range(settings.cancel_pin_lockout_after):
        r = await client.post(
            f"/v1/safe-return/{sid}/ok", json={"pin": "0000"}, headers=her.headers
        )
        assert r.status_code == 403, (n, r.text)
    assert await pool.fetchval("SELECT wrong_pin_count FROM member WHERE id = $1", her.id) == (
        settings.cancel_pin_lockout_after
    )
    # Locked out: her right PIN is refused too, on the walk and on an SOS cancel alike.
    r = await client.post(f"/v1/safe-return/{sid}/ok", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code == 429 and r.json()["error"] == "PinLockedOut"
    assert int(r.headers["Retry-After"]) > 0
    r = await client.post(f"/v1/safe-return/{sid}/end", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code == 429
    alert = await client.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": START[0], "lon": START[1], "accuracy_m": 10},
        },
        headers=her.headers,
    )
    cancel = await client.post(
        f"/v1/alerts/{alert.json()['incident_id']}/cancel",
        json={"pin": her.pin},
        headers=her.headers,
    )
    assert cancel.status_code == 429
    assert (
        await pool.fetchval("SELECT status FROM safe_return_session WHERE id = $1", uuid.UUID(sid))
        == "active"
    )


async def test_her_duress_pin_during_the_lockout_still_raises_the_silent_sos(
    client, world, pool, settings
):
    her = world["her"]
    sid = await _walk(client, her)
    await pool.execute(
        "UPDATE member SET wrong_pin_count = $2, pin_locked_until = now() + interval '10 minutes'"
        " WHERE id = $1",
        her.id,
        settings.cancel_pin_lockout_after,
    )
    r = await client.post(
        f"/v1/safe-return/{sid}/ok", json={"pin": her.duress_pin}, headers=her.headers
    )
    assert r.status_code == 429  # the same refusal as any PIN
    row = await pool.fetchrow(
        "SELECT status, incident_id FROM safe_return_session WHERE id = $1", uuid.UUID(sid)
    )
    assert row["status"] == "sos"
    assert await pool.fetchval("SELECT duress FROM incident WHERE id = $1", row["incident_id"])


async def test_her_right_pin_resets_the_count(client, world, pool):
    her = world["her"]
    sid = await _walk(client, her)
    for _ in range(2):
        await client.post(f"/v1/safe-return/{sid}/ok", json={"pin": "0000"}, headers=her.headers)
    assert await pool.fetchval("SELECT wrong_pin_count FROM member WHERE id = $1", her.id) == 2
    r = await client.post(f"/v1/safe-return/{sid}/ok", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code == 200
    assert await pool.fetchval("SELECT wrong_pin_count FROM member WHERE id = $1", her.id) == 0


async def test_her_erasure_leaves_no_place_or_position_in_walks_places_or_bookings(
    client, world, pool, settings
):
    from app.safe_return import scouts

    her = world["her"]
    await _place(client, her)
    sid = await _walk(client, her)
    await client.post(
        f"/v1/safe-return/{sid}/locations",
        json={"points": [{"lat": START[0], "lon": START[1]}]},
        headers=her.headers,
    )
    booking_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash) VALUES"
        " (gen_random_uuid(), 'sa', 'A', 'volunteer', 'x'),"
        " (gen_random_uuid(), 'sb', 'B', 'volunteer', 'x')"
    )
    await scouts.configure_district(
        pool, settings, district_code="A", min_lead_s=0, hours=None, active=True
    )
    t = await scouts.create_team(
        pool,
        district_code="A",
        name="T",
        scouts=("sa", "sb"),
        base=scouts.Point(*START),
        weekdays=[0],
    )
    await pool.execute(
        "INSERT INTO scout_booking (id, member_id, booked_via, district_id, team_id, meet_at,"
        " ends_at, meeting_point, meeting_label, destination_label, code)"
        " VALUES ($1, $2, 'app', $3, $4, now(), now() + interval '1 hour',"
        " ST_SetSRID(ST_MakePoint(126.91, 37.51), 4326)::geography, 'Exit 3', 'home', '123456')",
        booking_id,
        her.id,
        world["a"],
        uuid.UUID(t["team_id"]),
    )
    r = await client.post("/v1/me/erase", json={"pin": her.pin}, headers=her.headers)
    assert r.status_code in (200, 204), r.text
    assert await pool.fetchval("SELECT count(*) FROM saved_place") == 0
    assert await pool.fetchval("SELECT count(*) FROM safe_return_point") == 0
    walk = await pool.fetchrow("SELECT * FROM safe_return_session")
    assert walk["status"] == "ended"
    assert walk["destination"] is None and walk["last_position"] is None
    assert walk["destination_label"] is None
    booking = await pool.fetchrow("SELECT * FROM scout_booking")
    assert booking["status"] == "cancelled" and booking["meeting_point"] is None
    assert booking["meeting_label"] is None and booking["code"] is None
    assert (
        await pool.fetchval("SELECT count(*) FROM notification WHERE safe_return_id IS NOT NULL")
        == 0
    )
