"""Races and order: reports, accepts and positions that arrive at the same moment or late,
with real concurrency (a real uvicorn and concurrent pool connections)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.test_alerts import HERE, city, sos  # noqa: F401  (the fixture)
from tests.security.live_server import serve, ws_session


async def test_simultaneous_sos_with_different_ids_from_one_member_are_one_incident(
    app,
    make_member,
    city,  # noqa: F811
    pool,
):
    """Phone and wearable fire at once: different ``client_alert_id``s, one emergency."""
    members = [await make_member() for _ in range(3)]
    per_member = 6
    async with serve(app) as host:
        limits = httpx.Limits(max_connections=len(members) * per_member)
        async with httpx.AsyncClient(base_url=f"http://{host}", limits=limits) as http:
            replies = await asyncio.gather(
                *(
                    http.post("/v1/alerts", json=sos(), headers=m.headers, timeout=20)
                    for _ in range(per_member)
                    for m in members
                )
            )
    assert all(r.status_code in (200, 201) for r in replies), [r.text for r in replies]
    for m in members:
        ids = {
            uuid.UUID(r.json()["incident_id"])
            for r in replies
            if r.request.headers["authorization"] == m.headers["Authorization"]
        }
        rows = await pool.fetch("SELECT id FROM incident WHERE member_id = $1", m.id)
        assert len(rows) == 1, f"{len(rows)} incidents for one member"
        assert ids == {rows[0]["id"]}
    assert sorted(r.status_code for r in replies).count(201) == len(members)


async def _position(pool, incident_id):
    return await pool.fetchrow(
        "SELECT ST_Y(location::geometry) AS lat, location_captured_at FROM incident WHERE id = $1",
        incident_id,
    )


def _points(*lats_and_times):
    return {
        "points": [
            {"lat": lat, "lon": 127.03, "accuracy_m": 5, "captured_at": at.isoformat()}
            for lat, at in lats_and_times
        ]
    }


async def test_a_late_trail_batch_is_stored_but_never_moves_the_position_backwards(
    client,
    make_member,
    city,  # noqa: F811
    pool,
):
    m = await make_member()
    now = datetime.now(UTC)
    r = await client.post("/v1/alerts", json=sos(), headers=m.headers)  # her fix: no time
    incident_id = uuid.UUID(r.json()["incident_id"])
    url = f"/v1/alerts/{incident_id}/locations"

    # Buffered while she was offline, sent late: older than the SOS's position.
    late = _points((37.40, now - timedelta(minutes=3)), (37.41, now - timedelta(minutes=2)))
    r = await client.post(url, json=late, headers=m.headers)
    assert r.status_code == 202 and r.json()["stored"] == 2
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(HERE["lat"])

    await asyncio.sleep(0.3)
    fresh = datetime.now(UTC)  # after the SOS
    r = await client.post(url, json=_points((37.50, fresh)), headers=m.headers)
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(37.50)
    assert (await _position(pool, incident_id))["location_captured_at"] == fresh

    # Late again, but newer than the SOS: still older than the position now.
    slightly_late = _points((37.42, fresh - timedelta(milliseconds=100)))
    r = await client.post(url, json=slightly_late, headers=m.headers)
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(37.50)
    # In one batch the newest point wins, wherever it is in the batch.
    await asyncio.sleep(0.3)
    later = datetime.now(UTC)
    batch = _points((37.52, later), (37.51, later - timedelta(milliseconds=100)))
    r = await client.post(url, json=batch, headers=m.headers)
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(37.52)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM location_point WHERE incident_id = $1", incident_id
        )
        == 6
    ), "every point is in the trail"
    # A clock in the future does not freeze the position: it counts as now.
    r = await client.post(url, json=_points((37.53, now + timedelta(days=1))), headers=m.headers)
    r = await client.post(url, json={"points": [{"lat": 37.54, "lon": 127.03}]}, headers=m.headers)
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(37.54)


async def test_a_folded_report_with_an_older_fix_joins_the_trail_but_not_the_position(
    client,
    make_member,
    city,  # noqa: F811
    pool,
):
    m = await make_member()
    now = datetime.now(UTC)
    first = await client.post("/v1/alerts", json=sos(), headers=m.headers)
    incident_id = uuid.UUID(first.json()["incident_id"])
    old_fix = {"lat": 37.49, "lon": 127.02, "captured_at": (now - timedelta(minutes=1)).isoformat()}
    r = await client.post("/v1/alerts", json=sos(location=old_fix), headers=m.headers)
    assert r.json()["incident_id"] == str(incident_id)
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(HERE["lat"])
    assert await pool.fetchval("SELECT count(*) FROM location_point") == 1
    newer = {"lat": 37.495, "lon": 127.02}
    r = await client.post("/v1/alerts", json=sos(location=newer), headers=m.headers)
    assert (await _position(pool, incident_id))["lat"] == pytest.approx(37.495)


async def test_the_console_snapshot_in_a_flood_keeps_the_most_urgent_and_oldest_first(
    app, pool, make_member, make_staff, monkeypatch
):
    """More open incidents than the snapshot takes: the duress, the escalated and the silent
    come first, then the oldest unacknowledged, then the rest; the newest plain ones are cut."""
    monkeypatch.setattr(app.state.settings, "console_snapshot_max", 6)
    m = await make_member()
    base = datetime.now(UTC) - timedelta(hours=1)
    ids: dict[str, uuid.UUID] = {}

    async def incident(name, minute, **cols):
        cols = {"status": "new", "duress": False, "escalation_level": 0, "silent": False} | cols
        ids[name] = await pool.fetchval(
            "INSERT INTO incident (id, source, member_id, trigger, received_at, status, duress,"
            " escalation_level, silent, acknowledged_at, emergency_id)"
            " VALUES ($1, 'app', $2, 'button', $3::timestamptz, $4::text, $5, $6, $7,"
            " CASE WHEN $4::text <> 'new' THEN $3::timestamptz END, $1) RETURNING id",
            uuid.uuid4(),
            m.id,
            base + timedelta(minutes=minute),
            cols["status"],
            cols["duress"],
            cols["escalation_level"],
            cols["silent"],
        )

    await incident("acked_old", 0, status="acknowledged")
    await incident("new_oldest", 1)
    await incident("new_older", 2)
    for n in range(10):  # the flood: newer plain ones
        await incident(f"flood{n}", 30 + n)
    await incident("silent", 45, silent=True)
    await incident("escalated2", 44, escalation_level=2)
    await incident("escalated1", 46, escalation_level=1, status="acknowledged")
    await incident("duress", 50, duress=True, status="acknowledged")
    await pool.execute(
        "INSERT INTO incident (id, source, member_id, trigger, closed_at, status, disposition)"
        " VALUES ($1, 'app', $2, 'button', now(), 'resolved', 'x')",
        uuid.uuid4(),
        m.id,
    )
    dispatcher = await make_staff("dispatcher", city_wide=True)
    async with serve(app) as host:
        messages, _ = await ws_session(
            f"ws://{host}/v1/console/stream?token={dispatcher.token}",
            until=lambda ms: any(x["type"] == "snapshot" for x in ms),
            within=5,
        )
    (snapshot,) = [x for x in messages if x["type"] == "snapshot"]
    names = {str(v): k for k, v in ids.items()}
    assert [names[i["id"]] for i in snapshot["incidents"]] == [
        "duress",
        "escalated2",
        "escalated1",
        "silent",
        "new_oldest",
        "new_older",
    ]


async def _cancel(client, m, incident_id, pin):
    return await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": pin}, headers=m.headers
    )


async def test_after_five_wrong_pins_every_cancel_is_refused_alike_and_the_alert_stays_open(
    client,
    make_member,
    city,  # noqa: F811
    pool,
    settings,
):
    m = await make_member()
    r = await client.post("/v1/alerts", json=sos(), headers=m.headers)
    incident_id = uuid.UUID(r.json()["incident_id"])
    for n in range(settings.cancel_pin_lockout_after):
        r = await _cancel(client, m, incident_id, f"00{n:02d}")
        assert r.status_code == 403 and r.json()["error"] == "WrongPin"
    level = await pool.fetchval("SELECT escalation_level FROM incident WHERE id = $1", incident_id)
    assert level >= 1, "the wrong-PIN escalation stays"

    answers = [await _cancel(client, m, incident_id, pin) for pin in ("0100", m.pin, "0101")]
    for a in answers:
        assert a.status_code == 429
        assert a.json() == {
            "error": "CancelLockedOut",
            "detail": "too many wrong PINs: cancelling is locked for a while",
        }
        retry = int(a.headers["retry-after"])
        assert settings.cancel_pin_lockout_s - 10 <= retry <= settings.cancel_pin_lockout_s
    row = await pool.fetchrow(
        "SELECT status, closed_at, member_cancelled_at, escalation_level, duress FROM incident"
        " WHERE id = $1",
        incident_id,
    )
    assert row["status"] == "new" and row["closed_at"] is None
    assert row["member_cancelled_at"] is None and not row["duress"]
    assert row["escalation_level"] == level, "refused while locked: no more counting"
    view = await client.get(f"/v1/alerts/{incident_id}", headers=m.headers)
    assert view.json()["status"] == "new"

    # Once the lockout is over, the right PIN cancels (and clears it).
    await pool.execute(
        "UPDATE member SET pin_locked_until = now() - interval '1 s' WHERE id = $1", m.id
    )
    r = await _cancel(client, m, incident_id, m.pin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await pool.fetchval(
        "SELECT pin_locked_until IS NULL AND wrong_pin_count = 0 FROM member WHERE id = $1", m.id
    )


async def test_a_duress_pin_during_the_lockout_is_refused_like_any_but_escalates_silently(
    client,
    make_member,
    city,  # noqa: F811
    pool,
    settings,
):
    m = await make_member()
    r = await client.post("/v1/alerts", json=sos(), headers=m.headers)
    incident_id = uuid.UUID(r.json()["incident_id"])
    for n in range(settings.cancel_pin_lockout_after):
        await _cancel(client, m, incident_id, f"00{n:02d}")
    level = await pool.fetchval("SELECT escalation_level FROM incident WHERE id = $1", incident_id)
    real = await _cancel(client, m, incident_id, m.pin)
    duress = await _cancel(client, m, incident_id, m.duress_pin)
    assert duress.status_code == real.status_code == 429
    assert duress.json() == real.json()
    assert duress.headers.keys() == real.headers.keys()
    assert abs(int(duress.headers["retry-after"]) - int(real.headers["retry-after"])) <= 1
    row = await pool.fetchrow(
        "SELECT status, duress, escalation_level, member_cancelled_at FROM incident WHERE id = $1",
        incident_id,
    )
    assert row["duress"] and row["escalation_level"] == level + 1
    assert row["status"] == "new" and row["member_cancelled_at"] is None
    kinds = await pool.fetch(
        "SELECT kind, data FROM incident_event WHERE incident_id = $1 AND kind = 'duress_cancel'",
        incident_id,
    )
    assert [(k["kind"], k["data"]) for k in kinds] == [("duress_cancel", {"during_lockout": True})]
    view = await client.get(f"/v1/alerts/{incident_id}", headers=m.headers)
    assert view.json()["status"] == "new", "her screen shows what it showed after her real PIN"
