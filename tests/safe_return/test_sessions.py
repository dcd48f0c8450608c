"""Walk me home: the plan is checked before anything is written; each check is raised by the
sweeper from PostgreSQL's clock; "Are you OK?" is answered with her PIN (the duress PIN looks
the same and raises a silent SOS); no answer is an SOS through the normal intake and routing;
arrival inside the geofence ends it; guardians are told; the console sees the district's walks.

Time is moved by moving the session's own timestamps back (the trigger recomputes its timer)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.dispatch import routing
from app.dispatch.gateways import build_gateways
from app.dispatch.relay import publish_pending
from app.notifications import service as notifications
from app.safe_return import links, sweeper

# District A: a box around (37.52, 126.92); district B beside it, to the east.
A_BOX = (126.90, 37.50, 126.95, 37.55)
B_BOX = (126.95, 37.50, 127.00, 37.55)
START = (37.510, 126.910)
HOME = (37.520, 126.920)  # ~1.4 km from START
ROUTE = [START, (37.515, 126.915), HOME]


@pytest.fixture
async def world(make_district, make_member, make_staff, pool):
    a = await make_district("A", "District A", *A_BOX)
    b = await make_district("B", "District B", *B_BOX)
    her = await make_member("Jiyoung")
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mother', '+82101')",
        uuid.uuid4(),
        her.id,
    )
    disp_a = await make_staff("dispatcher", district_ids=(a,))
    disp_b = await make_staff("dispatcher", district_ids=(b,))
    return {"a": a, "b": b, "her": her, "disp_a": disp_a, "disp_b": disp_b}


def _start_body(**over):
    body = {
        "destination": {"lat": HOME[0], "lon": HOME[1]},
        "destination_label": "home",
        "origin": {"lat": START[0], "lon": START[1]},
        "route": [{"lat": la, "lon": lo} for la, lo in ROUTE],
        "share_with_control_centre": True,
    }
    body.update(over)
    return body


async def _start(client, her, **over) -> str:
    r = await client.post("/v1/safe-return", json=_start_body(**over), headers=her.headers)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


async def _row(pool, sid):
    return await pool.fetchrow("SELECT * FROM safe_return_session WHERE id = $1", uuid.UUID(sid))


async def _age(pool, sid, seconds: float, *columns: str) -> None:
    """Move the session's clocks ``seconds`` into the past."""
    sets = ", ".join(f"{c} = {c} - make_interval(secs => $2)" for c in columns)
    await pool.execute(
        f"UPDATE safe_return_session SET {sets} WHERE id = $1", uuid.UUID(sid), seconds
    )


async def _trail(client, her, sid, *points, battery=None):
    body = {"points": [{"lat": la, "lon": lo, "accuracy_m": 5} for la, lo in points]}
    if battery is not None:
        body["battery_pct"] = battery
    r = await client.post(f"/v1/safe-return/{sid}/locations", json=body, headers=her.headers)
    assert r.status_code == 202, r.text
    return r.json()


async def _sweep(pool, settings):
    return await sweeper.sweep(pool, settings)


# --- bad input: refused with the stable body, nothing written -------------------------------


async def _nothing_written(pool):
    assert await pool.fetchval("SELECT count(*) FROM safe_return_session") == 0
    assert await pool.fetchval("SELECT count(*) FROM notification") == 0


async def test_a_destination_outside_every_district_is_refused(client, world, pool):
    r = await client.post(
        "/v1/safe-return",
        json=_start_body(destination={"lat": 35.1, "lon": 129.0}, route=[]),
        headers=world["her"].headers,
    )
    assert r.status_code == 422
    assert r.json()["error"] == "OutsideServiceArea"
    await _nothing_written(pool)


@pytest.mark.parametrize(
    ("delta", "needle"), [(timedelta(minutes=-5), "past"), (timedelta(days=2), "hours ahead")]
)
async def test_an_arrival_time_in_the_past_or_days_ahead_is_refused(
    client, world, pool, delta, needle
):
    eta = (datetime.now(UTC) + delta).isoformat()
    r = await client.post(
        "/v1/safe-return", json=_start_body(expected_arrival_at=eta), headers=world["her"].headers
    )
    assert r.status_code == 422
    assert r.json()["error"] == "ArrivalTimeInvalid"
    assert needle in r.json()["detail"]
    await _nothing_written(pool)


async def test_a_route_of_100000_points_is_refused_and_one_over_the_limit_too(
    client, world, pool, settings
):
    huge = [{"lat": 37.51, "lon": 126.91}] * 100_000
    r = await client.post(
        "/v1/safe-return", json=_start_body(route=huge), headers=world["her"].headers
    )
    assert r.status_code == 413
    assert r.json()["error"]
    over = [{"lat": 37.51, "lon": 126.91}] * (settings.safe_return_route_max_points + 1)
    r = await client.post(
        "/v1/safe-return", json=_start_body(route=over), headers=world["her"].headers
    )
    assert r.status_code == 422
    assert r.json()["error"] == "RouteInvalid"
    await _nothing_written(pool)


async def test_a_route_that_never_reaches_the_destination_is_refused(client, world, pool):
    r = await client.post(
        "/v1/safe-return",
        json=_start_body(route=[{"lat": 37.51, "lon": 126.91}, {"lat": 37.511, "lon": 126.911}]),
        headers=world["her"].headers,
    )
    assert r.status_code == 422
    assert r.json()["error"] == "RouteInvalid"
    await _nothing_written(pool)


async def test_unknown_fields_and_nan_are_422_with_the_stable_body(client, world, pool):
    r = await client.post(
        "/v1/safe-return",
        content=b'{"destination": {"lat": NaN, "lon": 126.92}}',
        headers={**world["her"].headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert set(r.json()) >= {"error", "detail"}
    await _nothing_written(pool)


async def test_a_second_walk_while_one_runs_is_409_and_racing_starts_make_one(client, world, pool):
    results = await asyncio.gather(
        *(
            client.post("/v1/safe-return", json=_start_body(), headers=world["her"].headers)
            for _ in range(5)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409, 409]
    assert {r.json()["error"] for r in results if r.status_code == 409} == {"SessionAlreadyActive"}
    assert await pool.fetchval("SELECT count(*) FROM safe_return_session") == 1
    # Her guardian was told once.
    assert await pool.fetchval("SELECT count(*) FROM notification") == 1


# --- start: guardians told with their link ---------------------------------------------------


async def test_start_tells_her_guardians_with_a_link_that_shows_the_walk(
    client, world, pool, settings
):
    r = await client.post("/v1/safe-return", json=_start_body(), headers=world["her"].headers)
    assert r.status_code == 201
    body = r.json()
    sid = uuid.UUID(body["session_id"])
    # Computed at walking speed from the route's length (~1.4 km at 1.2 m/s: ~20 minutes).
    eta = datetime.fromisoformat(body["expected_arrival_at"])
    assert timedelta(minutes=15) < eta - datetime.now(UTC) < timedelta(minutes=30)

    n = await pool.fetchrow("SELECT * FROM notification")
    assert n["safe_return_id"] == sid and n["incident_id"] is None
    assert n["channel"] == "sms" and n["message"]["type"] == "walk_set_off"
    claimed = (await notifications.claim_due(pool, limit=10, lease_s=30))[0]
    rendered = notifications.render(settings, claimed)
    assert "Jiyoung has set off home" in rendered["text"]
    token = rendered["url"].rsplit("/", 1)[1]
    assert links.read_walk_token(settings, token) is not None

    await _trail(client, world["her"], body["session_id"], START)
    view = await client.get(f"/v1/guardian/walk/{token}")
    assert view.status_code == 200, view.text
    assert view.json()["name"] == "Jiyoung"
    assert view.json()["location"]["lat"] == pytest.approx(START[0])
    assert len(view.json()["trail"]) == 1
    reads = await pool.fetch("SELECT reason, guardian_id FROM safe_return_access")
    assert [r["reason"] for r in reads] == ["guardian_view"]
    # A forged token (another guardian id under the same session) is a 404.
    forged = links.walk_view_token(settings.model_copy(update={"secret_key": "x"}), sid, sid)
    assert (await client.get(f"/v1/guardian/walk/{forged}")).status_code == 404


# --- each check --------------------------------------------------------------------------------


async def _asked(pool, settings, sid, reason):
    result = await _sweep(pool, settings)
    assert result.asked == 1, result
    row = await _row(pool, sid)
    assert row["status"] == "asking"
    assert row["check_reason"] == reason
    push = await pool.fetchrow(
        "SELECT * FROM notification WHERE channel = 'push' AND safe_return_id = $1", row["id"]
    )
    assert push["target"] == f"member:{row['member_id']}"
    assert push["message"]["reason"] == reason
    assert push["message"]["type"] == "safe_return_check"
    return row


async def test_nothing_is_asked_while_every_check_is_in_the_future(client, world, pool, settings):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START)
    assert (await _sweep(pool, settings)).asked == 0
    assert (await _row(pool, sid))["status"] == "active"


async def test_no_arrival_by_the_expected_time_plus_grace_is_a_check(client, world, pool, settings):
    eta = (datetime.now(UTC) + timedelta(minutes=20)).isoformat()
    sid = await _start(client, world["her"], expected_arrival_at=eta)
    await _age(pool, sid, 20 * 60 + settings.safe_return_grace_s - 5, "arrival_due_at")
    await _trail(client, world["her"], sid, START)
    assert (await _sweep(pool, settings)).asked == 0  # 5 s of grace left
    await _age(pool, sid, 6, "arrival_due_at")
    await _asked(pool, settings, sid, "no_arrival")


async def test_no_position_for_n_minutes_is_a_check(client, world, pool, settings):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START)
    await _age(pool, sid, settings.safe_return_no_position_s - 5, "last_point_at")
    assert (await _sweep(pool, settings)).asked == 0
    await _age(pool, sid, 6, "last_point_at")
    await _asked(pool, settings, sid, "no_position")


async def test_leaving_the_route_corridor_for_y_seconds_is_a_check(client, world, pool, settings):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START)
    off = (37.515, 126.930)  # ~1 km east of the route
    await _trail(client, world["her"], sid, off)
    row = await _row(pool, sid)
    assert row["off_route_since"] is not None
    # Back on the route: the corridor clock stops.
    await _trail(client, world["her"], sid, (37.515, 126.915))
    assert (await _row(pool, sid))["off_route_since"] is None
    await _trail(client, world["her"], sid, off)
    await _age(pool, sid, settings.safe_return_off_route_s + 1, "off_route_since")
    await _asked(pool, settings, sid, "off_route")


async def test_a_position_inside_the_corridor_is_never_off_route(client, world, pool, settings):
    sid = await _start(client, world["her"])
    # ~100 m beside the route (the corridor is 150 m).
    await _trail(client, world["her"], sid, (37.515, 126.9161))
    assert (await _row(pool, sid))["off_route_since"] is None


async def test_not_moving_for_m_minutes_away_from_home_is_a_check(client, world, pool, settings):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START)
    await _trail(client, world["her"], sid, (START[0] + 0.0001, START[1]))  # ~11 m: still
    await _age(pool, sid, settings.safe_return_stationary_s + 1, "anchor_at")
    # (Her positions are fresh: it is the standing still that is the check.)
    await _asked(pool, settings, sid, "not_moving")


async def test_moving_resets_the_stationary_clock(client, world, pool, settings):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START)
    await _age(pool, sid, settings.safe_return_stationary_s + 1, "anchor_at")
    await _trail(client, world["her"], sid, (37.515, 126.915))  # moved ~700 m
    assert (await _sweep(pool, settings)).asked == 0


async def test_a_battery_under_5_percent_is_asked_once(client, world, pool, settings):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START, battery=4)
    await _asked(pool, settings, sid, "low_battery")
    r = await client.post(
        f"/v1/safe-return/{sid}/ok", json={"pin": world["her"].pin}, headers=world["her"].headers
    )
    assert r.status_code == 200
    await _trail(client, world["her"], sid, START, battery=3)
    assert (await _sweep(pool, settings)).asked == 0


# --- the answer -------------------------------------------------------------------------------


async def test_her_pin_clears_the_check_and_an_arrival_check_gets_the_grace_again(
    client, world, pool, settings
):
    eta = (datetime.now(UTC) + timedelta(minutes=20)).isoformat()
    sid = await _start(client, world["her"], expected_arrival_at=eta)
    await _trail(client, world["her"], sid, START)
    await _age(pool, sid, 3600, "arrival_due_at")
    await _asked(pool, settings, sid, "no_arrival")
    view = (await client.get(f"/v1/safe-return/{sid}", headers=world["her"].headers)).json()
    assert view["status"] == "asking" and view["check"]["reason"] == "no_arrival"

    wrong = await client.post(
        f"/v1/safe-return/{sid}/ok", json={"pin": "0000"}, headers=world["her"].headers
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "WrongPin"
    assert (await _row(pool, sid))["status"] == "asking"

    r = await client.post(
        f"/v1/safe-return/{sid}/ok", json={"pin": world["her"].pin}, headers=world["her"].headers
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    row = await _row(pool, sid)
    assert row["status"] == "active" and row["check_reason"] is None
    assert row["arrival_due_at"] > datetime.now(UTC) + timedelta(
        seconds=settings.safe_return_grace_s - 10
    )
    assert (await _sweep(pool, settings)).asked == 0


async def test_no_answer_becomes_an_sos_through_the_normal_intake_and_routing(
    client, world, pool, redis, settings
):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START, (37.512, 126.912))
    await _age(pool, sid, settings.safe_return_no_position_s + 1, "last_point_at")
    await _asked(pool, settings, sid, "no_position")
    assert (await _sweep(pool, settings)).escalated == 0  # she still has time to answer
    await _age(pool, sid, settings.safe_return_ask_s + 1, "asked_at")
    result = await _sweep(pool, settings)
    assert result.escalated == 1

    row = await _row(pool, sid)
    assert row["status"] == "sos" and row["incident_id"] is not None
    inc = await pool.fetchrow("SELECT * FROM incident WHERE id = $1", row["incident_id"])
    assert inc["source"] == "safe_return"
    assert inc["trigger"] == "no_position"
    assert inc["member_id"] == world["her"].id
    assert inc["district_id"] == world["a"]
    assert "no position" in inc["note"] and "home" in inc["note"]
    assert {"safe_return", "no_position"} <= set(inc["flags"])
    assert not inc["silent"]
    trail = await pool.fetchval(
        "SELECT count(*) FROM location_point WHERE incident_id = $1", inc["id"]
    )
    assert trail == 2  # her whole trail
    reported = await pool.fetchrow(
        "SELECT data FROM incident_event WHERE incident_id = $1 AND kind = 'reported'", inc["id"]
    )
    assert reported["data"]["safe_return_id"] == sid
    assert reported["data"]["destination"]["label"] == "home"

    # The normal path: the relay publishes it, a dispatcher routes it to district A's console
    # and queues her guardian's text.
    await publish_pending(pool, redis, settings)
    import httpx

    async with httpx.AsyncClient() as http:
        ctx = routing.Context(pool, redis, settings, build_gateways(settings, http))
        for _id, fields in await redis.xrange(settings.stream_incidents):
            await routing.handle(ctx, routing.parse_entry(fields))
    log = await redis.xrange(settings.console_stream)
    raw = [b" ".join(f.values()) for _i, f in log]
    assert any(str(inc["id"]).encode() in r and b"safe_return" in r for r in raw)
    texts = await pool.fetch(
        "SELECT message FROM notification WHERE incident_id = $1 AND channel = 'sms'", inc["id"]
    )
    assert texts and "SOS" in texts[0]["message"]["text"]

    # Her view names the incident; the console highlights it.
    view = (await client.get(f"/v1/safe-return/{sid}", headers=world["her"].headers)).json()
    assert view["status"] == "sos" and view["incident_id"] == str(inc["id"])
    console = await client.get("/v1/console/safe-return", headers=world["disp_a"].headers)
    sos = [s for s in console.json()["sessions"] if s["sos"]]
    assert [s["incident_id"] for s in sos] == [str(inc["id"])]
    # The sweep does not raise it twice.
    assert (await _sweep(pool, settings)).escalated == 0
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1


async def test_the_duress_pin_answers_like_her_pin_and_raises_a_silent_sos(
    client, world, pool, settings
):
    sid = await _start(client, world["her"])
    await _trail(client, world["her"], sid, START)
    await _age(pool, sid, settings.safe_return_no_position_s + 1, "last_point_at")
    await _asked(pool, settings, sid, "no_position")
    before = await client.get(f"/v1/safe-return/{sid}", headers=world["her"].headers)

    real = await client.post(
        f"/v1/safe-return/{sid}/ok", json={"pin": world["her"].pin}, headers=world["her"].headers
    )
    await _age(pool, sid, 3600, "last_point_at", "ok_at")
    await _asked(pool, settings, sid, "no_position")
    duress = await client.post(
        f"/v1/safe-return/{sid}/ok",
        json={"pin": world["her"].duress_pin},
        headers=world["her"].headers,
    )
    assert (real.status_code, real.json()) == (duress.status_code, duress.json())
    assert before.status_code == 200

    row = await _row(pool, sid)
    assert row["status"] == "sos" and row["check_reason"] == "duress"
    inc = await pool.fetchrow("SELECT * FROM incident WHERE id = $1", row["incident_id"])
    assert inc["silent"] and inc["duress"] and inc["source"] == "safe_return"
    # Her phone goes on showing a walk she answered, and its trail goes on to police.
    view = (await client.get(f"/v1/safe-return/{sid}", headers=world["her"].headers)).json()
    assert view["status"] == "active" and view["incident_id"] is None
    moved = await _trail(client, world["her"], sid, (37.513, 126.913))
    assert moved["status"] == "active"
    assert (
        await pool.fetchval("SELECT count(*) FROM location_point WHERE incident_id = $1", inc["id"])
        == 2
    )


async def test_ending_with_the_duress_pin_looks_ended_but_is_an_sos(client, world, pool):
    her = world["her"]
    sid = await _start(client, her)
    r = await client.post(
        f"/v1/safe-return/{sid}/end", json={"pin": her.duress_pin}, headers=her.headers
    )
    assert r.status_code == 200 and r.json() == {"session_id": sid, "status": "ended"}
    view = (await client.get(f"/v1/safe-return/{sid}", headers=her.headers)).json()
    assert view["status"] == "ended"
    row = await _row(pool, sid)
    assert row["status"] == "sos" and row["incident_id"] is not None
    # The trail after it answers as after a real end.
    assert (await _trail(client, her, sid, START))["status"] == "ended"
    # Her guardian was told "set off", not "ended" (the incident's routing tells them).
    kinds = await pool.fetch("SELECT message->>'type' AS t FROM notification ORDER BY id")
    assert [k["t"] for k in kinds] == ["walk_set_off"]


async def test_a_real_end_tells_her_guardians_and_stops_the_checks(client, world, pool, settings):
    her = world["her"]
    sid = await _start(client, her)
    r = await client.post(f"/v1/safe-return/{sid}/end", json={"pin": her.pin}, headers=her.headers)
    assert r.json() == {"session_id": sid, "status": "ended"}
    row = await _row(pool, sid)
    assert row["status"] == "ended" and row["next_check_at"] is None
    kinds = await pool.fetch("SELECT message->>'type' AS t FROM notification ORDER BY id")
    assert [k["t"] for k in kinds] == ["walk_set_off", "walk_ended"]
    await _age(pool, sid, 86400, "arrival_due_at", "started_at")
    assert (await _sweep(pool, settings)).asked == 0


async def test_extend_moves_the_arrival_check_but_not_past_the_longest_walk(
    client, world, pool, settings
):
    her = world["her"]
    sid = await _start(client, her)
    before = (await _row(pool, sid))["arrival_due_at"]
    r = await client.post(
        f"/v1/safe-return/{sid}/extend", json={"minutes": 15}, headers=her.headers
    )
    assert r.status_code == 200
    assert (await _row(pool, sid))["arrival_due_at"] - before == timedelta(minutes=15)
    hours = int(settings.safe_return_max_duration_s // 3600)
    for _ in range(hours * 4):
        r = await client.post(
            f"/v1/safe-return/{sid}/extend", json={"minutes": 15}, headers=her.headers
        )
        if r.status_code != 200:
            break
    assert r.status_code == 422 and r.json()["error"] == "ArrivalTimeInvalid"


# --- arrival ------------------------------------------------------------------------------------


async def test_arriving_inside_the_geofence_ends_the_walk_and_tells_her_guardians(
    client, world, pool, settings
):
    her = world["her"]
    sid = await _start(client, her)
    await _trail(client, her, sid, START)
    # 100 m short of home: not yet (the geofence is 75 m).
    await _trail(client, her, sid, (HOME[0] - 0.0009, HOME[1]))
    assert (await _row(pool, sid))["status"] == "active"
    answer = await _trail(client, her, sid, (HOME[0] - 0.0003, HOME[1]))  # ~33 m
    assert answer["status"] == "arrived"
    row = await _row(pool, sid)
    assert row["status"] == "arrived" and row["ended_at"] is not None
    assert row["next_check_at"] is None
    kinds = await pool.fetch("SELECT message->>'type' AS t FROM notification ORDER BY id")
    assert [k["t"] for k in kinds] == ["walk_set_off", "walk_arrived"]
    # Her guardian's link now answers 410.
    guardian_id = await pool.fetchval("SELECT id FROM guardian")
    token = links.walk_view_token(settings, uuid.UUID(sid), guardian_id)
    assert (await client.get(f"/v1/guardian/walk/{token}")).status_code == 410


# --- the console and privacy ---------------------------------------------------------------------


async def test_the_console_counts_the_districts_walks_and_shows_only_shared_ones(
    client, world, pool, make_member
):
    her = world["her"]
    shared = await _start(client, her, share_with_control_centre=True)
    await _trail(client, her, shared, START)
    other = await make_member("Minji")
    private = await _start(client, other, share_with_control_centre=False)
    await _trail(client, other, private, START)

    a = (await client.get("/v1/console/safe-return", headers=world["disp_a"].headers)).json()
    assert a["active"] == 2
    assert a["districts"] == [{"code": "A", "name": "District A", "active": 2}]
    assert [s["session_id"] for s in a["sessions"]] == [shared]
    assert a["sessions"][0]["location"]["lat"] == pytest.approx(START[0])
    reads = await pool.fetch("SELECT session_id, staff_id, reason FROM safe_return_access")
    assert [(str(r["session_id"]), r["staff_id"], r["reason"]) for r in reads] == [
        (shared, world["disp_a"].id, "console")
    ]
    # Another district's dispatcher sees none of them; a member is refused.
    b = (await client.get("/v1/console/safe-return", headers=world["disp_b"].headers)).json()
    assert b == {"active": 0, "districts": [], "sessions": []}
    assert (await client.get("/v1/console/safe-return", headers=her.headers)).status_code == 401


async def test_another_members_walk_is_404(client, world, make_member):
    sid = await _start(client, world["her"])
    other = await make_member("Minji")
    for method, path, body in (
        ("GET", f"/v1/safe-return/{sid}", None),
        ("POST", f"/v1/safe-return/{sid}/locations", {"points": [{"lat": 37.5, "lon": 126.9}]}),
        ("POST", f"/v1/safe-return/{sid}/ok", {"pin": other.pin}),
        ("POST", f"/v1/safe-return/{sid}/end", {"pin": other.pin}),
        ("POST", f"/v1/safe-return/{sid}/extend", {"minutes": 5}),
    ):
        r = await client.request(method, path, json=body, headers=other.headers)
        assert r.status_code == 404, (path, r.text)


async def test_the_trail_of_an_ended_walk_is_purged_after_the_retention(
    client, world, pool, settings
):
    her = world["her"]
    sid = await _start(client, her)
    await _trail(client, her, sid, START, (37.515, 126.915))
    await client.post(f"/v1/safe-return/{sid}/end", json={"pin": her.pin}, headers=her.headers)
    assert await sweeper.purge_ended(pool, retention_s=settings.trail_retention_s) == 0
    await _age(pool, sid, settings.trail_retention_s + 1, "ended_at")
    assert await sweeper.purge_ended(pool, retention_s=settings.trail_retention_s) == 1
    row = await _row(pool, sid)
    assert row["destination"] is None and row["last_position"] is None and row["route"] is None
    assert await pool.fetchval("SELECT count(*) FROM safe_return_point") == 0


# --- the sweep itself ---------------------------------------------------------------------------


async def test_the_sweep_reads_the_due_index_not_every_session(pool):
    plan = await pool.fetch(
        "EXPLAIN (FORMAT JSON) SELECT id FROM safe_return_session"
        " WHERE status = 'active' AND next_check_at <= now()"
        " ORDER BY next_check_at LIMIT 500 FOR UPDATE SKIP LOCKED"
    )
    text = plan[0][0]
    # (Planned on an empty table, the index is the only way that can be chosen without a sort.)
    assert "ix_safe_return_session_due" in text, text


async def test_concurrent_sweeps_ask_each_due_walk_once(client, world, pool, settings, make_member):
    ids = []
    for i in range(12):
        m = await make_member(f"W{i}")
        sid = await _start(client, m)
        ids.append(sid)
    await pool.execute(
        "UPDATE safe_return_session SET arrival_due_at = now() - interval '1 second'"
    )
    small = settings.model_copy(update={"safe_return_sweep_batch": 3})
    results = await asyncio.gather(*(sweeper.sweep(pool, small) for _ in range(4)))
    assert sum(r.asked for r in results) == 12
    pushes = await pool.fetchval("SELECT count(*) FROM notification WHERE channel = 'push'")
    assert pushes == 12
    assert all(0 <= late < 60 for r in results for late in r.lateness_s)
