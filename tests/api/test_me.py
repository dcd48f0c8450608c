"""Her account: guardians, export, erasure; and the trail retention job."""

from __future__ import annotations

import uuid

import pytest

from app.incidents.retention import purge_closed_trails

HERE = {"lat": 37.4979, "lon": 127.0276, "accuracy_m": 5}


async def _alert_with_trail(client, m) -> str:
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "location": HERE, "note": "on Gangnam-daero"},
        headers=m.headers,
    )
    incident_id = r.json()["incident_id"]
    await client.post(
        f"/v1/alerts/{incident_id}/locations",
        json={"points": [{"lat": 37.4981, "lon": 127.0280}, {"lat": 37.4983, "lon": 127.0282}]},
        headers=m.headers,
    )
    return incident_id


async def test_guardians_up_to_five(client, make_member):
    m = await make_member()
    for i in range(5):
        r = await client.post(
            "/v1/me/guardians",
            json={"name": f"G{i}", "phone": f"+8210000000{i}"},
            headers=m.headers,
        )
        assert r.status_code == 201
    sixth = await client.post(
        "/v1/me/guardians", json={"name": "G6", "phone": "+821000000099"}, headers=m.headers
    )
    assert sixth.status_code == 409 and sixth.json()["error"] == "Conflict"
    profile = (await client.get("/v1/me", headers=m.headers)).json()
    assert len(profile["guardians"]) == 5
    other = await make_member()
    gid = profile["guardians"][0]["id"]
    assert (
        await client.delete(f"/v1/me/guardians/{gid}", headers=other.headers)
    ).status_code == 404
    assert (await client.delete(f"/v1/me/guardians/{gid}", headers=m.headers)).status_code == 204


@pytest.mark.parametrize("phone", ["", "call me", "+82" + "1" * 40])
async def test_guardian_phone_is_validated(client, make_member, phone):
    m = await make_member()
    r = await client.post("/v1/me/guardians", json={"name": "G", "phone": phone}, headers=m.headers)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


async def test_export_holds_her_alerts_and_trail_but_not_the_duress_secret(client, make_member):
    m = await make_member()
    incident_id = await _alert_with_trail(client, m)
    await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": m.duress_pin}, headers=m.headers
    )
    data = (await client.get("/v1/me/export", headers=m.headers)).json()
    [alert] = data["alerts"]
    assert alert["incident_id"] == incident_id and len(alert["trail"]) == 2
    assert alert["note"] == "on Gangnam-daero"
    # An export may be read by whoever holds her phone: a duress cancel stays a cancel.
    assert alert["status"] == "cancelled"
    assert "duress" not in str(data)


async def test_erase_needs_her_pin_and_a_closed_alert(client, make_member, pool):
    m = await make_member()
    incident_id = await _alert_with_trail(client, m)
    wrong = await client.post("/v1/me/erase", json={"pin": "0000"}, headers=m.headers)
    assert wrong.status_code == 403
    still_open = await client.post("/v1/me/erase", json={"pin": m.pin}, headers=m.headers)
    assert still_open.status_code == 409
    await client.post(f"/v1/alerts/{incident_id}/cancel", json={"pin": m.pin}, headers=m.headers)
    await pool.execute(  # a text to a guardian, still queued
        "INSERT INTO notification (incident_id, channel, target, message, dedupe_key,"
        " deadline_at) VALUES ($1, 'sms', 'guardian:x', '{\"phone\": \"+8210\"}', 'k', now())",
        uuid.UUID(incident_id),
    )
    done = await client.post("/v1/me/erase", json={"pin": m.pin}, headers=m.headers)
    assert done.status_code == 204
    assert await pool.fetchval("SELECT count(*) FROM location_point") == 0
    assert await pool.fetchval("SELECT count(*) FROM notification") == 0
    row = await pool.fetchrow("SELECT name, phone, deleted_at FROM member WHERE id = $1", m.id)
    assert row["name"] == "(erased)" and row["deleted_at"] is not None
    assert await pool.fetchval("SELECT note FROM incident") is None
    # Her token no longer works.
    assert (await client.get("/v1/me", headers=m.headers)).status_code == 401


async def test_retention_purges_trails_of_incidents_closed_long_enough(client, make_member, pool):
    m = await make_member()
    old = await _alert_with_trail(client, m)
    await client.post(f"/v1/alerts/{old}/cancel", json={"pin": m.pin}, headers=m.headers)
    recent = await _alert_with_trail(client, m)
    await client.post(f"/v1/alerts/{recent}/cancel", json={"pin": m.pin}, headers=m.headers)
    still_open = await _alert_with_trail(client, await make_member())
    await pool.execute(
        "UPDATE incident SET closed_at = now() - interval '40 days' WHERE id = $1",
        uuid.UUID(old),
    )
    result = await purge_closed_trails(pool, retention_s=30 * 24 * 3600)
    assert (result.incidents, result.points) == (1, 2)
    counts = {
        r["incident_id"]: r["n"]
        for r in await pool.fetch(
            "SELECT incident_id, count(*) n FROM location_point GROUP BY incident_id"
        )
    }
    assert uuid.UUID(old) not in counts
    assert counts[uuid.UUID(recent)] == 2 and counts[uuid.UUID(still_open)] == 2
    row = await pool.fetchrow(
        "SELECT ST_Y(location::geometry) lat, flags FROM incident WHERE id = $1", uuid.UUID(old)
    )
    assert row["lat"] == pytest.approx(37.50) and "location_purged" in row["flags"]
    # Running again finds nothing more to do.
    assert (await purge_closed_trails(pool, retention_s=30 * 24 * 3600)).incidents == 0


async def test_export_shows_who_read_her_positions_by_role_badge_and_unit(
    client, make_member, make_staff, make_district, pool
):
    """Korea's Location Information Act, Art. 16: every read of her positions is hers to see,
    who by role, badge number and unit (never a staff member's name or account id), when and
    why."""
    gangnam = await make_district("11680", "강남구", 127.00, 37.45, 127.10, 37.53)
    dispatcher = await make_staff(district_ids=(gangnam,), name="Officer Park", badge_number="P-31")
    supervisor = await make_staff(city_wide=True, name="Chief Lee", badge_number="C-1")
    scout = await make_staff("volunteer", name="Scout Choi", badge_number="V-77")
    m = await make_member()
    incident_id = await _alert_with_trail(client, m)
    for staff in (dispatcher, supervisor):
        r = await client.get(f"/v1/console/incidents/{incident_id}", headers=staff.headers)
        assert r.status_code == 200
    guardian_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+821012345678')",
        guardian_id,
        m.id,
    )
    # As the volunteer's and the guardian's views write them.
    await pool.execute(
        "INSERT INTO location_access (incident_id, staff_ids, guardian_id, reason) VALUES"
        " ($1, ARRAY[$2]::uuid[], NULL, 'volunteer_view'), ($1, '{}', $3, 'guardian_view')",
        uuid.UUID(incident_id),
        scout.id,
        guardian_id,
    )
    data = (await client.get("/v1/me/export", headers=m.headers)).json()
    [alert] = data["alerts"]
    reads = alert["location_reads"]
    assert [(r["reason"], r["by"]) for r in reads] == [
        ("console_detail", [{"role": "dispatcher", "badge_number": "P-31", "unit": "강남구"}]),
        ("console_detail", [{"role": "dispatcher", "badge_number": "C-1", "unit": "city-wide"}]),
        ("volunteer_view", [{"role": "volunteer", "badge_number": "V-77", "unit": None}]),
        ("guardian_view", [{"role": "guardian", "name": "Mom"}]),
    ]
    assert all(r["at"] and r["why"] for r in reads)
    assert reads[-1]["why"] == "a guardian of yours opened the link texted to them"
    text = str(reads)
    for staff in (dispatcher, supervisor, scout):
        assert str(staff.id) not in text
    assert not any(name in text for name in ("Officer Park", "Chief Lee", "Scout Choi"))
    # Another woman's export lists none of these reads.
    other = await make_member()
    await _alert_with_trail(client, other)
    [theirs] = (await client.get("/v1/me/export", headers=other.headers)).json()["alerts"]
    assert theirs["location_reads"] == []


async def test_her_notes_are_in_her_export_and_erase_leaves_them_nowhere(client, make_member, pool):
    m = await make_member()
    incident_id = await _alert_with_trail(client, m)
    [alert] = (await client.get("/v1/me/export", headers=m.headers)).json()["alerts"]
    assert alert["note"] == "on Gangnam-daero"
    await client.post(f"/v1/alerts/{incident_id}/cancel", json={"pin": m.pin}, headers=m.headers)
    assert (
        await client.post("/v1/me/erase", json={"pin": m.pin}, headers=m.headers)
    ).status_code == 204
    # Not in any table that could hold her words.
    for sql in (
        "SELECT count(*) FROM incident WHERE note IS NOT NULL",
        "SELECT count(*) FROM incident_event WHERE data::text LIKE '%Gangnam-daero%'",
        "SELECT count(*) FROM outbox WHERE payload::text LIKE '%Gangnam-daero%'",
        "SELECT count(*) FROM notification WHERE message::text LIKE '%Gangnam-daero%'",
    ):
        assert await pool.fetchval(sql) == 0, sql
