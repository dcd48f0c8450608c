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
