"""Phone SOS intake against real PostGIS and Redis."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.e2e.harness import settled

# Gangnam-ish box and Jongno-ish box, and places around a point inside the first one.
GANGNAM = ("11680", "강남구", 127.00, 37.45, 127.10, 37.53)
JONGNO = ("11110", "종로구", 126.95, 37.56, 127.02, 37.60)
HERE = {"lat": 37.4979, "lon": 127.0276}


@pytest.fixture
async def city(make_district, make_place):
    gangnam = await make_district(*GANGNAM)
    jongno = await make_district(*JONGNO)
    near = await make_place("GS25 Gangnam", 37.4981, 127.0279)
    mid = await make_place("CU Yeoksam", 37.5000, 127.0360)
    far = await make_place("Police box", 37.5100, 127.0500, kind="police_box")
    closed = await make_place("Closed shop", 37.4980, 127.0277, open_24h=False)
    return {
        "gangnam": gangnam,
        "jongno": jongno,
        "near": near,
        "mid": mid,
        "far": far,
        "closed": closed,
    }


def sos(**extra):
    body = {
        "client_alert_id": str(uuid.uuid4()),
        "trigger": "button",
        "silent": False,
        "location": {**HERE, "accuracy_m": 8.0},
    }
    body.update(extra)
    return body


async def test_sos_creates_incident_event_and_outbox_in_one_commit(client, make_member, city, pool):
    m = await make_member()
    r = await client.post("/v1/alerts", json=sos(), headers=m.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "new"
    assert body["district"] == {"code": "11680", "name": "강남구"}
    assert body["warnings"] == []
    names = [p["name"] for p in body["nearest_safe_places"]]
    # The closed shop is nearest but not open now; the rest come nearest first.
    assert names == ["GS25 Gangnam", "CU Yeoksam", "Police box"]
    distances = [p["distance_m"] for p in body["nearest_safe_places"]]
    assert distances == sorted(distances) and 20 < distances[0] < 40
    incident_id = uuid.UUID(body["incident_id"])
    row = await pool.fetchrow("SELECT * FROM incident WHERE id = $1", incident_id)
    assert row["member_id"] == m.id and row["district_id"] == city["gangnam"]
    events = await pool.fetch(
        "SELECT kind, actor FROM incident_event WHERE incident_id = $1 ORDER BY id", incident_id
    )
    # Nothing but the consoles to tell (no guardians, no volunteer, no press near): routed here.
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("reported", f"member:{m.id}"),
        ("routed", "dispatch"),
    ]
    outbox = await pool.fetchrow("SELECT * FROM outbox WHERE incident_id = $1", incident_id)
    assert outbox["topic"] == "incident.created"
    assert outbox["payload"]["incident_id"] == str(incident_id)


async def test_same_client_alert_id_replays_the_same_incident(client, make_member, city, pool):
    m = await make_member()
    body = sos()
    first = await client.post("/v1/alerts", json=body, headers=m.headers)
    again = await client.post("/v1/alerts", json=body, headers=m.headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_an_answered_sos_is_on_the_consoles_and_a_retry_shows_it_once(
    client, make_member, city, pool, redis, settings
):
    """An SOS with nothing but the consoles to tell is routed by the API before it answers:
    its console message is on the console log, nothing waits for a dispatcher, and its receipt
    follows. A retry after that publishes nothing again."""
    m = await make_member()
    body = sos()
    first = await client.post("/v1/alerts", json=body, headers=m.headers)
    assert first.status_code == 201
    (message,) = await redis.xrange(settings.console_stream)
    shown = orjson.loads(message[1][b"body"])
    assert (shown["event"], shown["incident"]["id"]) == ("reported", first.json()["incident_id"])
    assert shown["incident"]["district_code"] == "11680"
    assert shown["incident"]["ack_deadline_at"] is not None
    assert set(shown["data"]) == {"source", "committed_at"}  # her position is in the summary
    assert await redis.xlen(settings.stream_incidents) == 0
    outbox_id = await pool.fetchval("SELECT id FROM outbox")
    assert await settled(
        pool, "SELECT count(*) FROM dispatch_receipt WHERE outbox_id = $1", outbox_id
    )
    assert (await client.post("/v1/alerts", json=body, headers=m.headers)).status_code == 200
    assert await redis.xlen(settings.stream_incidents) == 0
    assert await redis.xlen(settings.console_stream) == 1


async def test_an_answered_sos_for_the_dispatchers_is_republished_by_a_retry_until_routed(
    client, make_member, city, pool, redis, settings
):
    """An SOS a dispatcher must route (her guardians are to be texted) is in the incidents
    stream before the API answers. A retry (the phone heard nothing: the first attempt may have
    died between its commit and its publish) publishes it again until a dispatcher has routed
    it; consumers are idempotent by the outbox id."""
    m = await make_member()
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+8210')",
        uuid.uuid4(),
        m.id,
    )
    body = sos()

    async def stream_outbox_ids():
        return [int(f[b"outbox_id"]) for _i, f in await redis.xrange(settings.stream_incidents)]

    first = await client.post("/v1/alerts", json=body, headers=m.headers)
    assert first.status_code == 201
    outbox_id = await pool.fetchval("SELECT id FROM outbox")
    assert await stream_outbox_ids() == [outbox_id]
    assert await redis.xlen(settings.console_stream) == 0  # the dispatcher appends it
    assert (await client.post("/v1/alerts", json=body, headers=m.headers)).status_code == 200
    assert await stream_outbox_ids() == [outbox_id, outbox_id]
    await pool.execute("INSERT INTO dispatch_receipt (outbox_id) VALUES ($1)", outbox_id)
    assert (await client.post("/v1/alerts", json=body, headers=m.headers)).status_code == 200
    assert await stream_outbox_ids() == [outbox_id, outbox_id]  # routed: not again


async def test_same_client_alert_id_from_another_member_is_another_incident(
    client, make_member, city, pool
):
    a, b = await make_member(), await make_member()
    body = sos()
    ra = await client.post("/v1/alerts", json=body, headers=a.headers)
    rb = await client.post("/v1/alerts", json=body, headers=b.headers)
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["incident_id"] != rb.json()["incident_id"]


async def test_sos_without_location_is_accepted_and_flagged(client, make_member, city, pool):
    m = await make_member()
    r = await client.post("/v1/alerts", json=sos(location=None), headers=m.headers)
    assert r.status_code == 201
    body = r.json()
    assert body["district"] is None and body["nearest_safe_places"] == []
    assert "no_location" in body["flags"]
    flags = await pool.fetchval(
        "SELECT flags FROM incident WHERE id = $1", uuid.UUID(body["incident_id"])
    )
    assert "no_location" in flags


async def test_poor_and_stale_fix_is_accepted_and_flagged(client, make_member, city):
    m = await make_member()
    loc = {**HERE, "accuracy_m": 1500, "captured_at": "2020-01-01T00:00:00Z"}
    r = await client.post("/v1/alerts", json=sos(location=loc), headers=m.headers)
    assert r.status_code == 201
    assert {"location_poor", "location_stale"} <= set(r.json()["flags"])
    assert r.json()["nearest_safe_places"], "a poor fix still gets nearby places"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"client_alert_id": "%s", "location": {"lat": NaN, "lon": 127.0}}', "location_invalid"),
        (
            b'{"client_alert_id": "%s", "location": {"lat": 1e999, "lon": 127.0}}',
            "location_invalid",
        ),
        (
            b'{"client_alert_id": "%s", "location": {"lat": 137.5, "lon": 127.0}}',
            "location_invalid",
        ),
        (
            b'{"client_alert_id": "%s", "location": {"lat": "37.5", "lon": 127.0}}',
            "location_invalid",
        ),
        (b'{"client_alert_id": "%s", "location": [37.5, 127.0]}', "location_invalid"),
        (b'{"client_alert_id": "%s", "trigger": "telepathy"}', "trigger_unknown"),
        (b'{"client_alert_id": "%s", "mood": "scared"}', "unknown_field"),
        (b'{"client_alert_id": "%s", "note": "help\\u0000me"}', "note_cleaned"),
        (b'{"client_alert_id": "%s", "battery_pct": 250}', "battery_pct_invalid"),
        (b'{"client_alert_id": "%s", "silent": "maybe"}', "silent_invalid"),
        (
            b'{"client_alert_id": "%s", "location": {"lat": 37.5, "lon": 127.0, "accuracy_m": -1}}',
            "accuracy_invalid",
        ),
        (b'{"client_alert_id": "not-a-uuid%s"}', "client_alert_id_invalid"),
        (b'{"trigger": "shake"%s}', "client_alert_id_missing"),
    ],
)
async def test_unusable_parts_are_dropped_flagged_and_warned(
    client, make_member, city, pool, raw, code
):
    m = await make_member()
    payload = raw.replace(b"%s", str(uuid.uuid4()).encode() if b'"%s"' in raw else b"")
    r = await client.post(
        "/v1/alerts",
        content=payload,
        headers={**m.headers, "content-type": "application/json"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert code in [w["code"] for w in body["warnings"]]
    flags = await pool.fetchval(
        "SELECT flags FROM incident WHERE id = $1", uuid.UUID(body["incident_id"])
    )
    assert code in flags


async def test_nul_bytes_are_removed_from_the_note(client, make_member, city, pool):
    m = await make_member()
    r = await client.post("/v1/alerts", json=sos(note="he\x00lp"), headers=m.headers)
    assert r.status_code == 201
    note = await pool.fetchval(
        "SELECT note FROM incident WHERE id = $1", uuid.UUID(r.json()["incident_id"])
    )
    assert note == "help"


async def test_invalid_utf8_body_is_still_an_alert(client, make_member, city):
    m = await make_member()
    payload = b'{"client_alert_id": "%s", "note": "\xff\xfe"}' % str(uuid.uuid4()).encode()
    r = await client.post(
        "/v1/alerts", content=payload, headers={**m.headers, "content-type": "application/json"}
    )
    assert r.status_code == 201


async def test_empty_object_is_an_alert(client, make_member, city, pool):
    m = await make_member()
    r = await client.post("/v1/alerts", json={}, headers=m.headers)
    assert r.status_code == 201
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        (b"not json", 400, "NotAJSONObject"),
        (b"[1, 2]", 400, "NotAJSONObject"),
        (b'"hello"', 400, "NotAJSONObject"),
        (b"", 400, "NotAJSONObject"),
    ],
)
async def test_sos_refuses_only_what_is_not_a_json_object(
    client, make_member, pool, payload, status, error
):
    m = await make_member()
    r = await client.post(
        "/v1/alerts", content=payload, headers={**m.headers, "content-type": "application/json"}
    )
    assert r.status_code == status
    assert r.json()["error"] == error and r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


async def test_sos_body_over_the_limit_is_413(client, make_member, settings, pool):
    m = await make_member()
    big = orjson.dumps({"note": "x" * (settings.max_body_bytes + 10)})
    r = await client.post(
        "/v1/alerts", content=big, headers={**m.headers, "content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic abc", "Bearer "])
async def test_sos_needs_a_valid_member_token(client, pool, auth):
    headers = {"Authorization": auth} if auth else {}
    r = await client.post("/v1/alerts", json=sos(), headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthorized"
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


async def test_revoked_token_is_refused_but_the_credential_never_expires(
    client, make_member, pool, city
):
    m = await make_member()
    # Pretend the token is years old: member tokens have no expiry.
    await pool.execute("UPDATE member_token SET created_at = now() - interval '5 years'")
    assert (await client.post("/v1/alerts", json=sos(), headers=m.headers)).status_code == 201
    await pool.execute("UPDATE member_token SET revoked_at = now()")
    assert (await client.post("/v1/alerts", json=sos(), headers=m.headers)).status_code == 401


async def test_a_refused_token_writes_nothing_and_wins_over_a_bad_body(
    client, make_member, pool, city
):
    """The token is checked inside the insert statement: a revoked one must leave no incident,
    event or outbox row, and a bad body is a 401 before it is a 400."""
    m = await make_member()
    await pool.execute("UPDATE member_token SET revoked_at = now()")
    r = await client.post("/v1/alerts", json=sos(), headers=m.headers)
    assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
    for table in ("incident", "incident_event", "outbox"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0
    bad_body = {**m.headers, "Content-Type": "application/json"}
    assert (await client.post("/v1/alerts", content=b"[1]", headers=bad_body)).status_code == 401
    good = await make_member()
    r = await client.post(
        "/v1/alerts", content=b"[1]", headers={**good.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 400


async def test_staff_token_cannot_raise_an_sos(client, make_staff):
    s = await make_staff()
    r = await client.post("/v1/alerts", json=sos(), headers=s.headers)
    assert r.status_code == 401


# --- her own view, trail, cancel ------------------------------------------------------------


async def _raise(client, m, **extra):
    r = await client.post("/v1/alerts", json=sos(**extra), headers=m.headers)
    assert r.status_code == 201, r.text
    return r.json()["incident_id"]


async def test_member_sees_her_alert_and_not_anothers(client, make_member, city):
    a, b = await make_member(), await make_member()
    incident_id = await _raise(client, a)
    mine = await client.get(f"/v1/alerts/{incident_id}", headers=a.headers)
    assert mine.status_code == 200
    assert mine.json()["status"] == "new" and mine.json()["location"]["lat"] == HERE["lat"]
    for method, path, body in [
        ("GET", f"/v1/alerts/{incident_id}", None),
        ("POST", f"/v1/alerts/{incident_id}/cancel", {"pin": "1234"}),
        ("POST", f"/v1/alerts/{incident_id}/locations", {"points": [HERE]}),
    ]:
        r = await client.request(method, path, json=body, headers=b.headers)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"] == "NotFound"


async def test_bad_alert_id_is_a_422_with_the_stable_body(client, make_member):
    m = await make_member()
    r = await client.get("/v1/alerts/not-a-uuid", headers=m.headers)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


async def test_trail_points_are_stored_and_move_the_incident(client, make_member, city, pool):
    m = await make_member()
    incident_id = await _raise(client, m, location=None)
    points = [
        {"lat": 37.580, "lon": 126.990, "accuracy_m": 10, "captured_at": "2026-11-25T10:00:00Z"},
        {"lat": 37.581, "lon": 126.991, "accuracy_m": 12, "captured_at": "2026-11-25T10:00:05Z"},
    ]
    r = await client.post(
        f"/v1/alerts/{incident_id}/locations", json={"points": points}, headers=m.headers
    )
    assert r.status_code == 202 and r.json()["stored"] == 2
    row = await pool.fetchrow(
        "SELECT ST_Y(location::geometry) lat, district_id FROM incident WHERE id = $1",
        uuid.UUID(incident_id),
    )
    assert row["lat"] == pytest.approx(37.581)
    assert row["district_id"] == city["jongno"], (
        "an unlocated alert gets its district from the trail"
    )
    assert await pool.fetchval("SELECT count(*) FROM location_point") == 2
    kinds = await pool.fetch("SELECT payload->>'kind' k FROM outbox ORDER BY id")
    assert [k["k"] for k in kinds] == ["reported", "location"]


@pytest.mark.parametrize(
    "body",
    [
        {"points": []},
        {"points": [{"lat": 91, "lon": 127}]},
        {"points": [{"lat": 37.5, "lon": 127, "extra": 1}]},
        {"points": [{"lat": 37.5}]},
        {"pts": [{"lat": 37.5, "lon": 127}]},
    ],
)
async def test_trail_input_is_strict(client, make_member, city, body):
    m = await make_member()
    incident_id = await _raise(client, m)
    r = await client.post(f"/v1/alerts/{incident_id}/locations", json=body, headers=m.headers)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


async def test_trail_with_nan_is_refused(client, make_member, city):
    m = await make_member()
    incident_id = await _raise(client, m)
    r = await client.post(
        f"/v1/alerts/{incident_id}/locations",
        content=b'{"points": [{"lat": NaN, "lon": 127.0}]}',
        headers={**m.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422


async def test_right_pin_cancels(client, make_member, city, pool):
    m = await make_member()
    incident_id = await _raise(client, m)
    r = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": m.pin}, headers=m.headers
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    row = await pool.fetchrow("SELECT status, duress, escalation_level FROM incident")
    assert (row["status"], row["duress"], row["escalation_level"]) == ("cancelled", False, 0)
    view = await client.get(f"/v1/alerts/{incident_id}", headers=m.headers)
    assert view.json()["status"] == "cancelled"


async def test_duress_pin_looks_cancelled_but_escalates(client, make_member, city, pool):
    m = await make_member()
    real_id = await _raise(client, m)
    real = await client.post(f"/v1/alerts/{real_id}/cancel", json={"pin": m.pin}, headers=m.headers)
    duress_id = await _raise(client, m)
    assert duress_id != real_id
    duress = await client.post(
        f"/v1/alerts/{duress_id}/cancel", json={"pin": m.duress_pin}, headers=m.headers
    )
    # The same status, the same headers, the same body shape: nothing tells them apart.
    assert real.status_code == duress.status_code == 200
    assert set(real.json()) == set(duress.json())
    assert real.json()["status"] == duress.json()["status"] == "cancelled"
    assert {k for k in real.headers if k != "content-length"} == {
        k for k in duress.headers if k != "content-length"
    }
    view = await client.get(f"/v1/alerts/{duress_id}", headers=m.headers)
    assert view.json()["status"] == "cancelled"
    assert view.json()["responders"] == [] and view.json()["police_acknowledged"] is False
    row = await pool.fetchrow(
        "SELECT status, duress, escalation_level, closed_at FROM incident WHERE id = $1",
        uuid.UUID(duress_id),
    )
    assert row["status"] == "new" and row["duress"] is True
    assert row["escalation_level"] == 1 and row["closed_at"] is None
    kinds = await pool.fetch(
        "SELECT payload->>'kind' k FROM outbox WHERE incident_id = $1 ORDER BY id",
        uuid.UUID(duress_id),
    )
    assert [k["k"] for k in kinds] == ["reported", "duress_cancel"]


async def test_duress_pin_after_a_real_cancel_reopens_quietly(client, make_member, city, pool):
    m = await make_member()
    incident_id = await _raise(client, m)
    await client.post(f"/v1/alerts/{incident_id}/cancel", json={"pin": m.pin}, headers=m.headers)
    r = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": m.duress_pin}, headers=m.headers
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    row = await pool.fetchrow("SELECT status, duress FROM incident")
    assert row["status"] == "new" and row["duress"] is True


async def test_wrong_pin_is_refused_and_repeated_wrong_pins_escalate(
    client, make_member, city, pool, settings
):
    m = await make_member()
    incident_id = await _raise(client, m)
    for i in range(settings.max_wrong_pins):
        r = await client.post(
            f"/v1/alerts/{incident_id}/cancel", json={"pin": "0000"}, headers=m.headers
        )
        assert r.status_code == 403 and r.json()["error"] == "WrongPin"
        level = await pool.fetchval("SELECT escalation_level FROM incident")
        assert level == (1 if i == settings.max_wrong_pins - 1 else 0)
    row = await pool.fetchrow("SELECT status, escalation_level FROM incident")
    assert row["status"] == "new"
    assert (
        await pool.fetchval("SELECT count(*) FROM security_event WHERE kind = 'wrong_cancel_pin'")
        == settings.max_wrong_pins
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM incident_event WHERE kind = 'wrong_pin_escalation'"
        )
        == 1
    )


# --- floods fold into one incident ----------------------------------------------------------


async def test_a_second_sos_while_her_alert_is_open_joins_it(client, make_member, city, pool):
    m = await make_member()
    first = await _raise(client, m, location=None)
    r = await client.post("/v1/alerts", json=sos(trigger="shake"), headers=m.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["incident_id"] == first
    assert "folded_into_open_alert" in [w["code"] for w in body["warnings"]]
    # Her first report had no location: the second one's position is used and answered with.
    assert body["district"] == {"code": "11680", "name": "강남구"}
    assert body["nearest_safe_places"][0]["name"] == "GS25 Gangnam"
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1
    assert await pool.fetchval("SELECT count(*) FROM location_point") == 1
    assert "repeated" in await pool.fetchval("SELECT flags FROM incident")


async def test_an_sos_flood_from_one_credential_is_accepted_and_folded(
    client, make_member, city, pool
):
    m = await make_member()
    statuses = [
        (await client.post("/v1/alerts", json=sos(), headers=m.headers)).status_code
        for _ in range(25)
    ]
    assert statuses[0] == 201 and set(statuses[1:]) == {200}, "never refused"
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1
    # One repeat entry on the timeline (and console) per 10 s, not one per press.
    assert (
        await pool.fetchval("SELECT count(*) FROM incident_event WHERE kind = 'repeat_report'") == 1
    )
    # The created report and one repeat entry: a flood does not flood the consoles.
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 2
    assert await pool.fetchval("SELECT count(*) FROM location_point") == 24


async def test_after_a_cancel_a_new_sos_is_a_new_incident(client, make_member, city, pool):
    m = await make_member()
    first = await _raise(client, m)
    await client.post(f"/v1/alerts/{first}/cancel", json={"pin": m.pin}, headers=m.headers)
    second = await _raise(client, m)
    assert second != first
    assert await pool.fetchval("SELECT count(*) FROM incident") == 2


async def test_another_members_open_alert_does_not_absorb_hers(client, make_member, city, pool):
    a, b = await make_member(), await make_member()
    assert await _raise(client, a) != await _raise(client, b)
