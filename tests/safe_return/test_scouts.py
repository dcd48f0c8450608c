"""Safe Return Scouts: the booking rules (hours, lead time, district, free teams, one booking
per woman, the race for the last team), each refusal naming the next free slot and writing
nothing; the assignment (least loaded, then nearest); the one-time code on both sides; the
scouts' check-in, the walk as a safe-return session with the scouts attached (an SOS names and
assigns them); cancellations by either side; no-shows; the district office's evening; her
position seen by the scouts only while they walk her, logged; purged after the retention.

Against real PostGIS and Redis; time is moved by moving the bookings' own timestamps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.safe_return import scouts, sweeper

A_BOX = (126.90, 37.50, 126.95, 37.55)
B_BOX = (126.95, 37.50, 127.00, 37.55)
EXIT = (37.510, 126.910)  # the subway exit, district A
HOME = (37.515, 126.915)  # ~700 m away, district A
NEAR_BASE = (37.511, 126.911)
FAR_BASE = (37.545, 126.945)
ALL_DAY = [(wd, time(0), time(0)) for wd in range(7)]  # 24-hour evenings, for most tests
SEOUL = ZoneInfo("Asia/Seoul")


@pytest.fixture
async def world(make_district, make_member, make_staff, pool, settings):
    a = await make_district("A", "District A", *A_BOX)
    b = await make_district("B", "District B", *B_BOX)
    await scouts.configure_district(
        pool, settings, district_code="A", min_lead_s=60, hours=ALL_DAY, active=True
    )
    s = {}
    for n in range(1, 5):
        s[n] = await make_staff("volunteer", name=f"Scout {n}", badge_number=f"S-{n:03d}")
    names = {}
    for n, creds in s.items():
        names[n] = await pool.fetchval("SELECT username FROM staff WHERE id = $1", creds.id)
    near = await scouts.create_team(
        pool,
        district_code="A",
        name="Near",
        scouts=(names[1], names[2]),
        base=scouts.Point(*NEAR_BASE),
        weekdays=list(range(7)),
    )
    her = await make_member("Jiyoung")
    other = await make_member("Minji")
    disp_a = await make_staff("dispatcher", district_ids=(a,))
    disp_b = await make_staff("dispatcher", district_ids=(b,))
    operator = await make_staff("operator")
    return {
        "a": a,
        "b": b,
        "scouts": s,
        "usernames": names,
        "near": near["team_id"],
        "her": her,
        "other": other,
        "disp_a": disp_a,
        "disp_b": disp_b,
        "operator": operator,
    }


async def _far_team(pool, world) -> str:
    team = await scouts.create_team(
        pool,
        district_code="A",
        name="Far",
        scouts=(world["usernames"][3], world["usernames"][4]),
        base=scouts.Point(*FAR_BASE),
        weekdays=list(range(7)),
    )
    return team["team_id"]


def _body(meet_at: datetime | str | None = None, **over):
    if not isinstance(meet_at, str):
        meet_at = (meet_at or datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    body = {
        "meeting_point": {"lat": EXIT[0], "lon": EXIT[1]},
        "meeting_label": "Exit 3",
        "meet_at": meet_at,
        "destination": {"lat": HOME[0], "lon": HOME[1]},
        "destination_label": "home",
    }
    body.update(over)
    return body


async def _book(client, member, **over):
    r = await client.post("/v1/scout-bookings", json=_body(**over), headers=member.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _nothing_written(pool):
    assert await pool.fetchval("SELECT count(*) FROM scout_booking") == 0
    assert await pool.fetchval("SELECT count(*) FROM notification") == 0


# --- the rules ------------------------------------------------------------------------------


async def test_a_booking_assigns_a_team_and_tells_her_and_both_scouts(client, world, pool):
    b = await _book(client, world["her"])
    assert b["status"] == "booked"
    assert b["team"]["id"] == world["near"]
    assert [s["badge_number"] for s in b["scouts"]] == ["S-001", "S-002"]
    # No photo on file: a placeholder, never nothing.
    assert all(s["photo_url"] == scouts.PHOTO_PLACEHOLDER for s in b["scouts"])
    assert len(b["code"]) == 6 and b["code"].isdigit()
    rows = await pool.fetch(
        "SELECT channel, target, message FROM notification WHERE scout_booking_id = $1",
        uuid.UUID(b["booking_id"]),
    )
    targets = {r["target"] for r in rows}
    assert targets == {
        f"member:{world['her'].id}",
        f"volunteer:{world['scouts'][1].id}",
        f"volunteer:{world['scouts'][2].id}",
    }
    hers = next(r for r in rows if r["target"].startswith("member:"))
    assert b["code"] in hers["message"]["text"] and "S-001" in hers["message"]["text"]


async def test_3am_saturday_is_outside_the_hours_and_the_answer_says_the_next_free_slot(
    client, world, pool, settings
):
    await scouts.configure_district(
        pool, settings, district_code="A", min_lead_s=1800, hours=None, active=True
    )
    today = datetime.now(SEOUL).date()
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    at = datetime.combine(saturday, time(3), SEOUL)
    r = await client.post("/v1/scout-bookings", json=_body(at), headers=world["her"].headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "OutsideServiceHours"
    # Seoul's hours: no weekend, so the next slot is Monday 22:00.
    monday = datetime.combine(saturday + timedelta(days=2), time(22), SEOUL)
    assert datetime.fromisoformat(r.json()["next_free_at"]) == monday
    await _nothing_written(pool)


async def test_friday_evening_runs_past_midnight_but_monday_ends_at_midnight(
    client, world, pool, settings
):
    await scouts.configure_district(
        pool, settings, district_code="A", min_lead_s=1800, hours=None, active=True
    )
    today = datetime.now(SEOUL).date()
    saturday = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
    # 00:30 on Saturday is Friday's evening (22:00-01:00).
    r = await client.post(
        "/v1/scout-bookings",
        json=_body(datetime.combine(saturday, time(0, 30), SEOUL)),
        headers=world["her"].headers,
    )
    assert r.status_code == 201, r.text
    await client.post(
        f"/v1/scout-bookings/{r.json()['booking_id']}/cancel", json={}, headers=world["her"].headers
    )
    # 00:30 on Tuesday is after Monday's evening (22:00-24:00).
    tuesday = saturday + timedelta(days=3)
    if tuesday - today <= timedelta(days=settings.scout_max_days_ahead):
        r = await client.post(
            "/v1/scout-bookings",
            json=_body(datetime.combine(tuesday, time(0, 30), SEOUL)),
            headers=world["her"].headers,
        )
        assert r.status_code == 422 and r.json()["error"] == "OutsideServiceHours"


async def test_a_holiday_is_closed(client, world, pool):
    tomorrow = datetime.now(SEOUL).date() + timedelta(days=1)
    await scouts.add_closed_day(pool, day=tomorrow, district_code=None, label="Chuseok")
    at = datetime.combine(tomorrow, time(12), SEOUL)
    r = await client.post("/v1/scout-bookings", json=_body(at), headers=world["her"].headers)
    assert r.status_code == 422 and r.json()["error"] == "OutsideServiceHours"
    assert datetime.fromisoformat(r.json()["next_free_at"]) >= datetime.combine(
        tomorrow + timedelta(days=1), time(0), SEOUL
    )


async def test_too_late_is_refused_with_the_district_lead_time_and_the_next_slot(
    client, world, pool, settings
):
    await scouts.configure_district(
        pool, settings, district_code="A", min_lead_s=1800, hours=ALL_DAY, active=True
    )
    now = datetime.now(UTC)
    r = await client.post(
        "/v1/scout-bookings",
        json=_body(now + timedelta(minutes=10)),
        headers=world["her"].headers,
    )
    assert r.status_code == 422 and r.json()["error"] == "BookingTooLate"
    assert "30 minutes" in r.json()["detail"]
    nxt = datetime.fromisoformat(r.json()["next_free_at"])
    assert now + timedelta(minutes=30) <= nxt <= now + timedelta(minutes=41)
    await _nothing_written(pool)
    # A district that takes bookings 20 minutes ahead takes it.
    await scouts.configure_district(
        pool, settings, district_code="A", min_lead_s=1200, hours=ALL_DAY, active=True
    )
    r = await client.post(
        "/v1/scout-bookings",
        json=_body(now + timedelta(minutes=25)),
        headers=world["her"].headers,
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"meeting_point": {"lat": 37.52, "lon": 126.97}}, "OutsideServiceArea"),  # B: no scouts
        ({"meeting_point": {"lat": 35.1, "lon": 129.0}}, "OutsideServiceArea"),  # Busan
        ({"destination": {"lat": 37.52, "lon": 126.97}}, "OutsideDistrict"),
        ({"meet_at": "2026-12-08T23:00:00"}, "BookingTimeInvalid"),  # no time zone
        ({"meet_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}, "BookingTimeInvalid"),
        ({"destination": None}, "DestinationInvalid"),
        ({"unknown": 1}, "ValidationError"),
        ({"meeting_point": {"lat": "NaN", "lon": 126.9}}, "ValidationError"),
    ],
)
async def test_bad_bookings_are_4xx_with_the_stable_body_and_write_nothing(
    client, world, pool, over, error
):
    r = await client.post("/v1/scout-bookings", json=_body(**over), headers=world["her"].headers)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"] == error
    await _nothing_written(pool)


async def test_a_second_booking_by_the_same_woman_is_409(client, world, pool):
    await _far_team(pool, world)
    await _book(client, world["her"])
    r = await client.post(
        "/v1/scout-bookings",
        json=_body(datetime.now(UTC) + timedelta(hours=3)),
        headers=world["her"].headers,
    )
    assert r.status_code == 409 and r.json()["error"] == "BookingAlreadyActive"
    assert await pool.fetchval("SELECT count(*) FROM scout_booking") == 1


async def test_no_team_free_is_409_with_the_next_free_slot(client, world, pool, settings):
    first = await _book(client, world["her"])
    r = await client.post("/v1/scout-bookings", json=_body(), headers=world["other"].headers)
    assert r.status_code == 409 and r.json()["error"] == "NoScoutTeamFree"
    nxt = datetime.fromisoformat(r.json()["next_free_at"])
    # The only team is free again when its escort (walk + turnaround) is over.
    assert nxt >= datetime.fromisoformat(first["ends_at"])
    assert nxt < datetime.fromisoformat(first["ends_at"]) + timedelta(
        seconds=settings.scout_slot_step_s
    )
    assert await pool.fetchval("SELECT count(*) FROM scout_booking") == 1
    # And that slot is bookable.
    await _book(client, world["other"], meet_at=nxt)


async def test_two_bookings_racing_for_the_last_team_get_one_team(client, world, pool, make_member):
    women = [world["her"], world["other"], await make_member("Sora")]
    body = _body()
    answers = await asyncio.gather(
        *(client.post("/v1/scout-bookings", json=body, headers=w.headers) for w in women)
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409], [a.text for a in answers]
    assert await pool.fetchval("SELECT count(*) FROM scout_booking") == 1


async def test_assignment_is_least_loaded_then_nearest(client, world, pool, make_member):
    far = await _far_team(pool, world)
    now = datetime.now(UTC)
    first = await _book(client, world["her"], meet_at=now + timedelta(minutes=10))
    assert first["team"]["id"] == world["near"]  # nearer base, both unloaded
    # Later the same evening: the near team has one escort, the far team none.
    second = await _book(client, world["other"], meet_at=now + timedelta(hours=2))
    assert second["team"]["id"] == far


# --- the evening -----------------------------------------------------------------------------


async def test_the_code_matches_on_both_sides_and_a_wrong_one_starts_nothing(client, world, pool):
    b = await _book(client, world["her"])
    bid = b["booking_id"]
    scout = world["scouts"][1]
    theirs = (await client.get(f"/v1/scouts/bookings/{bid}", headers=scout.headers)).json()
    assert theirs["code"] == b["code"] and theirs["her_name"] == "Jiyoung"
    assert theirs["her_position"] is None  # not walking yet
    # A scout of another team does not see it.
    r = await client.get(f"/v1/scouts/bookings/{bid}", headers=world["scouts"][3].headers)
    assert r.status_code == 404

    wrong = "000000" if b["code"] != "000000" else "111111"
    r = await client.post(
        f"/v1/scout-bookings/{bid}/start", json={"code": wrong}, headers=world["her"].headers
    )
    assert r.status_code == 422 and r.json()["error"] == "CodeMismatch"
    assert await pool.fetchval("SELECT count(*) FROM safe_return_session") == 0
    assert await pool.fetchval("SELECT status FROM scout_booking") == "booked"


async def test_check_in_then_the_walk_is_a_session_and_the_scouts_see_her_only_meanwhile(
    client, world, pool
):
    b = await _book(client, world["her"])
    bid = b["booking_id"]
    scout = world["scouts"][2]
    r = await client.post(f"/v1/scouts/bookings/{bid}/arrived", headers=scout.headers)
    assert r.status_code == 200 and r.json()["scouts_arrived_at"]
    told = await pool.fetchval(
        "SELECT message->>'text' FROM notification WHERE target = $1"
        " AND message->>'type' = 'scouts_arrived'",
        f"member:{world['her'].id}",
    )
    assert "Scout 1 (S-001)" in told and b["code"] in told

    r = await client.post(
        f"/v1/scout-bookings/{bid}/start",
        json={"code": b["code"], "share_with_control_centre": True},
        headers=world["her"].headers,
    )
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["status"] == "walking" and started["safe_return_id"]
    sid = started["safe_return_id"]
    session = await pool.fetchrow(
        "SELECT status, ST_Y(destination::geometry) AS lat FROM safe_return_session WHERE id = $1",
        uuid.UUID(sid),
    )
    assert session["status"] == "active" and session["lat"] == pytest.approx(HOME[0])

    await client.post(
        f"/v1/safe-return/{sid}/locations",
        json={"points": [{"lat": 37.512, "lon": 126.912, "accuracy_m": 5}]},
        headers=world["her"].headers,
    )
    seen = (await client.get(f"/v1/scouts/bookings/{bid}", headers=scout.headers)).json()
    assert seen["her_position"]["lat"] == pytest.approx(37.512)
    logged = await pool.fetch(
        "SELECT staff_id, reason FROM safe_return_access WHERE session_id = $1", uuid.UUID(sid)
    )
    assert [(r["staff_id"], r["reason"]) for r in logged] == [(scout.id, "scout_escort")]
    # The list never carries her position.
    listed = (await client.get("/v1/scouts/bookings", headers=scout.headers)).json()
    assert "her_position" not in listed["bookings"][0]

    r = await client.post(f"/v1/scouts/bookings/{bid}/complete", headers=scout.headers)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert r.json()["code"] is None
    after = (await client.get(f"/v1/scouts/bookings/{bid}", headers=scout.headers)).json()
    assert after["her_position"] is None
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM safe_return_access WHERE session_id = $1", uuid.UUID(sid)
        )
        == 1
    )


async def test_an_sos_during_the_escort_names_the_scouts_and_assigns_them(
    client, world, pool, settings
):
    b = await _book(client, world["her"])
    r = await client.post(
        f"/v1/scout-bookings/{b['booking_id']}/start", json={}, headers=world["her"].headers
    )
    sid = uuid.UUID(r.json()["safe_return_id"])
    await pool.execute(
        "UPDATE safe_return_session SET status = 'asking', asked_at = now() - interval '1 hour',"
        " check_reason = 'no_position' WHERE id = $1",
        sid,
    )
    assert (await sweeper.sweep(pool, settings)).escalated == 1
    inc = await pool.fetchrow(
        "SELECT i.* FROM incident i JOIN safe_return_session s ON s.incident_id = i.id"
        " WHERE s.id = $1",
        sid,
    )
    assert "Scout 1 (badge S-001" in inc["note"] and "Scout 2 (badge S-002" in inc["note"]
    assigned = await pool.fetch(
        "SELECT volunteer_id FROM assignment WHERE incident_id = $1 AND kind = 'volunteer'",
        inc["id"],
    )
    assert {a["volunteer_id"] for a in assigned} == {
        world["scouts"][1].id,
        world["scouts"][2].id,
    }
    reported = await pool.fetchval(
        "SELECT data FROM incident_event WHERE incident_id = $1 AND kind = 'reported'", inc["id"]
    )
    assert [s["badge_number"] for s in reported["scouts"]] == ["S-001", "S-002"]
    # The console's incident shows them as assigned volunteers.
    detail = await client.get(f"/v1/console/incidents/{inc['id']}", headers=world["disp_a"].headers)
    assert {a.get("badge_number") for a in detail.json()["assignments"]} == {"S-001", "S-002"}


async def test_an_ordinary_walk_names_no_scouts(client, world, pool, settings):
    r = await client.post(
        "/v1/safe-return",
        json={
            "destination": {"lat": HOME[0], "lon": HOME[1]},
            "origin": {"lat": EXIT[0], "lon": EXIT[1]},
        },
        headers=world["her"].headers,
    )
    sid = uuid.UUID(r.json()["session_id"])
    await pool.execute(
        "UPDATE safe_return_session SET status = 'asking', asked_at = now() - interval '1 hour',"
        " check_reason = 'no_position' WHERE id = $1",
        sid,
    )
    await sweeper.sweep(pool, settings)
    note = await pool.fetchval("SELECT note FROM incident")
    assert "Scouts" not in note
    assert await pool.fetchval("SELECT count(*) FROM assignment") == 0


async def test_she_cancels_and_the_scouts_are_told(client, world, pool):
    b = await _book(client, world["her"])
    r = await client.post(
        f"/v1/scout-bookings/{b['booking_id']}/cancel",
        json={"reason": "a friend picks me up"},
        headers=world["her"].headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["cancelled_by"] == "member" and r.json()["code"] is None
    told = await pool.fetchval(
        "SELECT count(*) FROM notification WHERE message->>'type' = 'scouts_cancelled'"
        " AND target LIKE 'volunteer:%'"
    )
    assert told == 2
    again = await client.post(
        f"/v1/scout-bookings/{b['booking_id']}/cancel", json={}, headers=world["her"].headers
    )
    assert again.status_code == 409
    # Another member's booking is a 404.
    r = await client.get(f"/v1/scout-bookings/{b['booking_id']}", headers=world["other"].headers)
    assert r.status_code == 404
    # And she may book again.
    await _book(client, world["her"])


async def test_the_scouts_cancel_and_another_free_team_takes_it_with_a_new_code(
    client, world, pool
):
    far = await _far_team(pool, world)
    b = await _book(client, world["her"])
    assert b["team"]["id"] == world["near"]
    r = await client.post(
        f"/v1/scouts/bookings/{b['booking_id']}/cancel",
        json={"reason": "sick"},
        headers=world["scouts"][1].headers,
    )
    assert r.status_code == 200
    moved = r.json()
    assert moved["status"] == "booked" and moved["team"]["id"] == far
    assert moved["code"] != b["code"]
    told = await pool.fetchval(
        "SELECT message->>'text' FROM notification WHERE target = $1"
        " AND message->>'type' = 'scouts_team_changed'",
        f"member:{world['her'].id}",
    )
    assert moved["code"] in told
    # With no other team free, the scouts' cancel cancels it and she is told.
    r = await client.post(
        f"/v1/scouts/bookings/{b['booking_id']}/cancel", json={}, headers=world["scouts"][3].headers
    )
    assert r.json()["status"] == "cancelled" and r.json()["cancelled_by"] == "scouts"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM notification WHERE target = $1"
            " AND message->>'type' = 'scouts_cancelled'",
            f"member:{world['her'].id}",
        )
        == 1
    )


async def test_scouts_not_there_ten_minutes_after_are_a_no_show_she_is_told_the_office_sees_it(
    client, world, pool, settings
):
    b = await _book(client, world["her"])
    bid = uuid.UUID(b["booking_id"])
    assert (await sweeper.sweep(pool, settings)).no_shows == 0
    await pool.execute(
        "UPDATE scout_booking SET meet_at = now() - make_interval(secs => $2) WHERE id = $1",
        bid,
        settings.scout_no_show_s + 1,
    )
    assert (await sweeper.sweep(pool, settings)).no_shows == 1
    assert (await sweeper.sweep(pool, settings)).no_shows == 0  # once
    view = (await client.get(f"/v1/scout-bookings/{bid}", headers=world["her"].headers)).json()
    assert view["status"] == "no_show" and view["no_show_at"] and view["code"] is None
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM notification WHERE target = $1"
            " AND message->>'type' = 'scouts_no_show'",
            f"member:{world['her'].id}",
        )
        == 1
    )
    evening = scouts.evening_of(settings, datetime.fromisoformat(view["meet_at"]))
    office = await client.get(
        f"/v1/console/scout-bookings?evening={evening.isoformat()}",
        headers=world["disp_a"].headers,
    )
    assert office.status_code == 200
    assert office.json()["counts"] == {"no_show": 1}
    assert office.json()["bookings"][0]["her_name"] == "Jiyoung"
    other = await client.get(
        f"/v1/console/scout-bookings?evening={evening.isoformat()}",
        headers=world["disp_b"].headers,
    )
    assert other.json()["bookings"] == []


async def test_scouts_who_checked_in_are_no_no_show(client, world, pool, settings):
    b = await _book(client, world["her"])
    await client.post(
        f"/v1/scouts/bookings/{b['booking_id']}/arrived", headers=world["scouts"][1].headers
    )
    await pool.execute("UPDATE scout_booking SET meet_at = now() - interval '1 hour'")
    assert (await sweeper.sweep(pool, settings)).no_shows == 0


async def test_a_call_taker_books_for_a_woman_without_the_app_in_her_districts_only(
    client, world, pool
):
    body = {
        **_body(),
        "guest_name": "Mrs Park",
        "guest_phone": "+82 10 5555 1234",
        "booked_via": "call_centre",
    }
    r = await client.post("/v1/console/scout-bookings", json=body, headers=world["disp_b"].headers)
    assert r.status_code == 403
    await _nothing_written(pool)
    r = await client.post("/v1/console/scout-bookings", json=body, headers=world["disp_a"].headers)
    assert r.status_code == 201, r.text
    assert r.json()["booked_via"] == "call_centre" and r.json()["her_name"] == "Mrs Park"
    sms = await pool.fetchrow(
        "SELECT channel, message FROM notification WHERE target LIKE 'guest:%'"
    )
    assert sms["channel"] == "sms" and sms["message"]["phone"] == "+82 10 5555 1234"
    assert r.json()["code"] in sms["message"]["text"]
    # Booked twice for the same phone: one booking.
    again = await client.post(
        "/v1/console/scout-bookings",
        json={**body, "meet_at": (datetime.now(UTC) + timedelta(hours=3)).isoformat()},
        headers=world["disp_a"].headers,
    )
    assert again.status_code == 409
    # The scouts start a guest's walk (no app, no session) and complete it.
    bid = r.json()["booking_id"]
    scout = world["scouts"][1]
    assert (await client.post(f"/v1/scouts/bookings/{bid}/start", headers=scout.headers)).json()[
        "status"
    ] == "walking"
    cancel = await client.post(
        f"/v1/console/scout-bookings/{bid}/cancel", json={}, headers=world["disp_a"].headers
    )
    assert cancel.status_code == 409  # walking: too late to cancel


async def test_an_ended_bookings_places_are_purged_after_the_retention(client, world, pool):
    b = await _book(client, world["her"])
    await client.post(
        f"/v1/scout-bookings/{b['booking_id']}/cancel", json={}, headers=world["her"].headers
    )
    assert await sweeper.purge_ended(pool, retention_s=3600) == 0
    await pool.execute("UPDATE scout_booking SET updated_at = now() - interval '2 hours'")
    assert await sweeper.purge_ended(pool, retention_s=3600) == 1
    row = await pool.fetchrow("SELECT * FROM scout_booking")
    assert row["meeting_point"] is None and row["destination"] is None
    assert row["meeting_label"] is None and row["destination_label"] is None


# --- operators ------------------------------------------------------------------------------


async def test_operators_set_hours_and_teams_of_two_volunteers(client, world, pool, make_staff):
    h = world["operator"].headers
    r = await client.put(
        "/v1/admin/scouts/districts/B",
        json={
            "min_lead_minutes": 20,
            "hours": [{"weekday": 0, "opens": "21:00", "closes": "23:30"}],
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["min_lead_s"] == 1200 and r.json()["hours"][0]["closes"] == "23:30"
    r = await client.put("/v1/admin/scouts/districts/B", json={}, headers=h)
    assert [d["weekday"] for d in r.json()["hours"]] == [0, 1, 2, 3, 4]  # Seoul's
    disp = await pool.fetchval("SELECT username FROM staff WHERE id = $1", world["disp_a"].id)
    u = world["usernames"]
    r = await client.post(
        "/v1/admin/scouts/teams",
        json={
            "district_code": "B",
            "name": "x",
            "scouts": [u[3], disp],
            "base": {"lat": 37.52, "lon": 126.97},
        },
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"] == "NotAScout"
    r = await client.post(
        "/v1/admin/scouts/teams",
        json={
            "district_code": "B",
            "name": "B-1",
            "scouts": [u[3], u[4]],
            "base": {"lat": 37.52, "lon": 126.97},
            "weekdays": [0],
        },
        headers=h,
    )
    assert r.status_code == 201
    teams = (await client.get("/v1/admin/scouts/teams", headers=h)).json()["teams"]
    assert {t["name"] for t in teams} == {"Near", "B-1"}
    r = await client.post(
        "/v1/admin/scouts/closed-days", json={"day": "2026-12-25", "label": "Christmas"}, headers=h
    )
    assert r.status_code == 201
    assert (
        await client.put("/v1/admin/scouts/districts/B", json={}, headers=world["disp_a"].headers)
    ).status_code == 403


async def test_an_escort_can_go_to_one_of_her_saved_places(client, world, pool):
    r = await client.post(
        "/v1/me/places",
        json={"label": "my flat", "lat": HOME[0], "lon": HOME[1]},
        headers=world["her"].headers,
    )
    b = await _book(
        client,
        world["her"],
        destination=None,
        destination_label=None,
        destination_place_id=r.json()["id"],
    )
    assert b["destination_label"] == "my flat"
    assert b["destination"]["lat"] == pytest.approx(HOME[0])


async def test_the_photo_placeholder_is_served(client):
    r = await client.get(scouts.PHOTO_PLACEHOLDER)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg")
