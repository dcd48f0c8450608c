"""End to end with real processes: one uvicorn API, two dispatchers, a gateway receiver, real
WebSocket consoles. Incidents are written with the intake's own insert (one statement: incident,
timeline event, outbox row), exactly as `POST /v1/alerts` commits them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx
import orjson
import pytest
from redis.exceptions import ResponseError

from app.incidents.store import NewIncident, insert_incident
from tests.e2e.harness import (
    Console,
    GatewayReceiver,
    free_ports,
    settled,
    stack_env,
    start_api,
    start_dispatcher,
)

#: Chosen free when the module's stack starts (two suites on one machine must not collide).
API_PORT, GATEWAY_PORT = 0, 0

# Two districts side by side, and a point outside both.
A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
IN_A = (37.52, 126.92)
IN_B = (37.52, 126.97)


@pytest.fixture(scope="module")
async def gateway():
    global API_PORT, GATEWAY_PORT
    API_PORT, GATEWAY_PORT = free_ports(2)
    receiver = GatewayReceiver(GATEWAY_PORT)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="module")
async def stack(gateway, migrated, settings):
    env = stack_env(redis_url=settings.redis_url, gateway_port=GATEWAY_PORT)
    api = await asyncio.to_thread(start_api, API_PORT, env)
    d1 = start_dispatcher("e2e-d1", env)
    d2 = start_dispatcher("e2e-d2", env)
    procs = {"api": api, "d1": d1, "d2": d2, "env": env}
    try:
        yield procs
    finally:
        for key in ("d1", "d2", "d3", "api"):
            if key in procs:
                procs[key].stop()


@pytest.fixture
async def world(make_district, make_staff, make_member, gateway):
    gateway.received.clear()
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    return {
        "a": a,
        "b": b,
        "disp_a": await make_staff("dispatcher", district_ids=(a,), name="Kim A"),
        "disp_b": await make_staff("dispatcher", district_ids=(b,), name="Lee B"),
        "super": await make_staff("dispatcher", city_wide=True, name="Park"),
        "member": await make_member(),
    }


async def sos(pool, member, at=IN_A, source="app"):
    stored = await insert_incident(
        pool,
        NewIncident(
            source=source,
            trigger="sos" if source == "app" else "button",
            actor=f"member:{member.id}",
            member_id=member.id if source == "app" else None,
            lat=at[0],
            lon=at[1],
            accuracy_m=10,
        ),
    )
    assert stored is not None
    return stored.id


def reported(incident_id):
    return lambda m: (
        m["type"] == "incident"
        and m["event"] == "reported"
        and m["incident"]["id"] == str(incident_id)
    )


async def test_sos_reaches_its_district_console_and_not_the_others(stack, world, pool):
    async with (
        Console(API_PORT, world["disp_a"].token) as con_a,
        Console(API_PORT, world["disp_b"].token) as con_b,
        Console(API_PORT, world["super"].token) as con_city,
    ):
        incident_id = await sos(pool, world["member"], IN_A)
        msg = await con_a.wait_for(reported(incident_id), 5)
        assert msg["incident"]["district_code"] == "A"
        assert msg["incident"]["ack_deadline_at"] is not None
        await con_city.wait_for(reported(incident_id), 5)
        # Something for B arrives after, so B is provably live and still saw nothing of A's.
        # Promise 6: a console that was sent her location has that read logged.
        logged = await settled(
            pool,
            "SELECT count(*) FROM location_access WHERE incident_id = $1"
            " AND staff_ids @> ARRAY[$2]::uuid[] AND reason = 'console_stream'",
            incident_id,
            world["disp_a"].id,
        )
        assert logged == 1
        other = await sos(pool, world["member"], IN_B)
        await con_b.wait_for(reported(other), 5)
        assert all(m["incident"]["id"] != str(incident_id) for m in con_b.incidents())
        assert all(m["incident"]["id"] != str(other) for m in con_a.incidents())
        # Incidents outside every district go to the city-wide channel only.
        nowhere = await sos(pool, world["member"], (35.1, 129.0))
        m = await con_city.wait_for(reported(nowhere), 5)
        assert m["incident"]["district_id"] is None


async def test_messages_waiting_together_reach_a_batch_console_in_one_frame(
    stack, world, pool, redis, settings
):
    """What reaches the API together goes out in one frame to a console that asked for
    batches (the web console does), in log order; a console that did not ask (an older one)
    gets the same messages one per frame."""
    async with (
        Console(API_PORT, world["disp_a"].token) as batched,
        Console(API_PORT, world["disp_a"].token, batch=False) as plain,
    ):
        incident_id = await sos(pool, world["member"], IN_A)
        summary = (await batched.wait_for(reported(incident_id), 5))["incident"]
        await plain.wait_for(reported(incident_id), 5)
        frames = batched.frames, plain.frames
        pipe = redis.pipeline(transaction=True)  # all 20 on the log at once
        for n in range(20):
            body = {"type": "incident", "event": "note", "incident": summary, "data": {"n": n}}
            pipe.xadd(
                settings.console_stream, {"district": str(world["a"]), "body": orjson.dumps(body)}
            )
        await pipe.execute()

        def notes(con: Console) -> list[dict]:
            return [m for m in con.messages if m["type"] == "incident" and m["event"] == "note"]

        await batched.wait_count(lambda m: m.get("event") == "note", 20, 5)
        await plain.wait_count(lambda m: m.get("event") == "note", 20, 5)
        assert [m["data"]["n"] for m in notes(batched)] == list(range(20))
        assert [m["cursor"] for m in notes(batched)] == [m["cursor"] for m in notes(plain)]
        assert plain.frames - frames[1] == 20
        assert batched.frames - frames[0] < 20
        assert batched.last_frame["type"] == "batch"
        assert batched.last_frame["cursor"] == notes(batched)[-1]["cursor"]


async def test_new_console_gets_a_snapshot_of_open_incidents(stack, world, pool):
    incident_id = await sos(pool, world["member"], IN_A)
    await asyncio.sleep(0.2)
    async with Console(API_PORT, world["disp_a"].token) as con:
        snap = await con.wait_for(lambda m: m["type"] == "snapshot", 5)
        assert str(incident_id) in [i["id"] for i in snap["incidents"]]
    async with Console(API_PORT, world["disp_b"].token) as con_b:
        snap = await con_b.wait_for(lambda m: m["type"] == "snapshot", 5)
        assert snap["incidents"] == []


async def test_a_console_reconnecting_with_its_cursor_misses_nothing(stack, world, pool):
    async with Console(API_PORT, world["disp_a"].token) as con:
        first = await sos(pool, world["member"], IN_A)
        await con.wait_for(reported(first), 5)
        cursor = con.cursor
    missed = [await sos(pool, world["member"], IN_A) for _ in range(5)]
    await asyncio.sleep(1.5)  # they are on the console log while this console is away
    async with Console(API_PORT, world["disp_a"].token, cursor=cursor) as con:
        assert not [m for m in con.messages if m["type"] == "snapshot"]
        got = await con.wait_count(
            lambda m: m["type"] == "incident" and m["event"] == "reported", 5, 5
        )
        # Two dispatchers route in parallel: all of them, each once (order is the log's).
        assert sorted(m["incident"]["id"] for m in got) == sorted(str(i) for i in missed)
        live = await sos(pool, world["member"], IN_A)
        await con.wait_for(reported(live), 5)
        cursors = [tuple(map(int, m["cursor"].split("-"))) for m in con.incidents()]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


async def test_console_ack_and_status_follow_the_state_machine(stack, world, pool):
    async with Console(API_PORT, world["disp_a"].token) as con:
        incident_id = await sos(pool, world["member"], IN_A)
        await con.wait_for(reported(incident_id), 5)
        base = f"http://127.0.0.1:{API_PORT}/v1/console/incidents/{incident_id}"
        h = world["disp_a"].headers
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(f"{base}/status", json={"status": "on_scene"}, headers=h)
            assert r.status_code == 409 and r.json()["error"] == "Conflict"
            r = await http.post(f"{base}/ack", json={}, headers=h)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "acknowledged"
            assert (await http.post(f"{base}/ack", json={}, headers=h)).status_code == 409
            r = await http.post(f"{base}/assign", json={"kind": "unit", "unit": "A-12"}, headers=h)
            assert r.status_code == 200, r.text
            r = await http.post(f"{base}/status", json={"status": "resolved"}, headers=h)
            assert r.status_code == 400  # a disposition is required
            r = await http.post(
                f"{base}/status",
                json={"status": "resolved", "disposition": "escorted home"},
                headers=h,
            )
            assert r.json()["status"] == "resolved"
            r = await http.get(base, headers=world["disp_b"].headers)
            assert r.status_code == 404  # out of B's scope
            r = await http.get(base, headers=h)
            kinds = [e["kind"] for e in r.json()["timeline"]]
            assert kinds[:2] == ["reported", "routed"]
            assert {"acknowledged", "assigned", "resolved"} <= set(kinds)
        await con.wait_for(
            lambda m: (
                m["type"] == "incident"
                and m["event"] == "resolved"
                and m["incident"]["disposition"] == "escorted home"
            ),
            5,
        )
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM location_access WHERE incident_id = $1", incident_id
            )
            >= 1
        )


async def test_no_acknowledgement_escalates_on_time_and_is_recorded(stack, world, pool):
    async with Console(API_PORT, world["super"].token) as con:
        incident_id = await sos(pool, world["member"], IN_A)
        m = await con.wait_for(
            lambda m: (
                m["type"] == "incident"
                and m["event"] == "escalated"
                and m["incident"]["id"] == str(incident_id)
            ),
            6,
        )
        assert m["data"]["reason"] == "ack_timeout" and m["data"]["level"] == 1
    row = await pool.fetchrow(
        "SELECT e.at - i.received_at AS after FROM incident_event e JOIN incident i"
        " ON i.id = e.incident_id WHERE e.incident_id = $1 AND e.kind = 'escalated'"
        " ORDER BY e.at LIMIT 1",
        incident_id,
    )
    assert 2.0 <= row["after"].total_seconds() < 3.5  # deadline 2 s in this stack


async def test_sigkill_of_a_dispatcher_mid_flight_loses_nothing(
    stack, world, pool, redis, settings
):
    async with Console(API_PORT, world["disp_a"].token) as con:
        # Freeze both dispatchers; a third one takes the entries and is SIGKILLed holding them.
        os.kill(stack["d1"].popen.pid, signal.SIGSTOP)
        os.kill(stack["d2"].popen.pid, signal.SIGSTOP)
        try:
            ids = [await sos(pool, world["member"], IN_A) for _ in range(8)]
            stack["d3"] = start_dispatcher("e2e-victim", stack["env"])
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    info = await redis.xinfo_consumers(
                        settings.stream_incidents, settings.stream_group
                    )
                except ResponseError:  # no stream or group yet: the victim is still starting
                    info = []
                victim = [c for c in info if c["name"] in (b"e2e-victim", "e2e-victim")]
                if victim and victim[0]["pending"] > 0:
                    break
                await asyncio.sleep(0.005)
            stack["d3"].kill(signal.SIGKILL)
            stack["d1"].kill(signal.SIGKILL)  # and one of the frozen ones dies too
        finally:
            os.kill(stack["d2"].popen.pid, signal.SIGCONT)
        got = await con.wait_count(
            lambda m: m["type"] == "incident" and m["event"] == "reported", 8, 15
        )
        assert {m["incident"]["id"] for m in got} == {str(i) for i in ids}
        stack["d1"] = start_dispatcher("e2e-d1", stack["env"])
    # Nothing stays stuck on the dead consumers (escalations keep flowing meanwhile).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending = await redis.xpending(settings.stream_incidents, settings.stream_group)
        if pending["pending"] == 0:
            break
        await asyncio.sleep(0.1)
    assert pending["pending"] == 0


async def test_a_poison_entry_is_dead_lettered_while_others_flow(
    stack, world, pool, redis, settings
):
    async with Console(API_PORT, world["disp_a"].token) as con:
        await redis.xadd(
            settings.stream_incidents,
            {
                "outbox_id": "999999",
                "topic": "incident.created",
                "payload": b'{"kind": "reported"}',
            },
        )
        ids = [await sos(pool, world["member"], IN_A) for _ in range(3)]
        for i in ids:
            await con.wait_for(reported(i), 5)
        deadline = time.monotonic() + 15
        dead = []
        while time.monotonic() < deadline and not dead:
            dead = await redis.xrange(settings.stream_dead_letter)
            await asyncio.sleep(0.1)
        assert len(dead) == 1
        assert dead[0][1][b"outbox_id"] == b"999999"
        assert int(dead[0][1][b"deliveries"]) == 3
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(
                f"http://127.0.0.1:{API_PORT}/v1/console/dead-letters",
                headers=world["super"].headers,
            )
            assert r.json()["entries"][0]["outbox_id"] == "999999"


async def test_a_volunteer_accepts_and_the_member_sees_who_is_coming(
    stack, world, pool, make_staff, gateway
):
    vol1 = await make_staff("volunteer", name="Choi Volunteer", badge_number="SRS-0042")
    vol2 = await make_staff("volunteer", name="Second", badge_number="SRS-0043")
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+821011112222')",
        uuid.uuid4(),
        world["member"].id,
    )
    api = f"http://127.0.0.1:{API_PORT}/v1/volunteers"
    async with httpx.AsyncClient(timeout=5) as http:
        for v, dlat in ((vol1, 0.001), (vol2, 0.002)):
            r = await http.post(
                f"{api}/duty",
                json={"on_duty": True, "lat": IN_A[0] + dlat, "lon": IN_A[1]},
                headers=v.headers,
            )
            assert r.status_code == 200
        incident_id = await sos(pool, world["member"], IN_A)
        deadline = time.monotonic() + 8
        pushes = []
        while time.monotonic() < deadline and (
            len(pushes) < 2 or not any(m["path"] == "/sms" for m in gateway.received)
        ):
            pushes = [m for m in gateway.received if m["path"] == "/push"]
            await asyncio.sleep(0.05)
        assert {p["to"] for p in pushes} == {f"volunteer:{vol1.id}", f"volunteer:{vol2.id}"}
        assert gateway.rejected == 0  # every body carried a valid HMAC signature
        sms = [m for m in gateway.received if m["path"] == "/sms"]
        assert len(sms) == 1 and sms[0]["message"]["phone"] == "+821011112222"
        offers = (await http.get(f"{api}/offers", headers=vol1.headers)).json()["offers"]
        assert offers[0]["incident_id"] == str(incident_id) and "lat" not in offers[0]
        r = await http.post(f"{api}/offers/{offers[0]['id']}/accept", json={}, headers=vol1.headers)
        assert r.status_code == 200, r.text
        assert r.json()["incident"]["lat"] == pytest.approx(IN_A[0])
        offer2 = (await http.get(f"{api}/offers", headers=vol2.headers)).json()["offers"][0]
        r = await http.post(f"{api}/offers/{offer2['id']}/accept", json={}, headers=vol2.headers)
        assert r.status_code == 409 and r.json()["error"] == "AlreadyCovered"
        mine = await http.get(
            f"http://127.0.0.1:{API_PORT}/v1/alerts/{incident_id}", headers=world["member"].headers
        )
    view = mine.json()
    assert view["responders"] == [
        {
            "kind": "volunteer",
            "name": "Choi Volunteer",
            "badge_number": "SRS-0042",
            "assigned_at": view["responders"][0]["assigned_at"],
        }
    ]
    assert view["police_acknowledged"] is False
    attempts = await pool.fetchval(
        "SELECT count(*) FROM delivery_attempt WHERE incident_id = $1 AND ok", incident_id
    )
    assert attempts == 3  # two pushes, one SMS: each once


async def test_a_button_press_and_a_phone_sos_nearby_are_one_emergency(
    stack, world, pool, make_place
):
    async with Console(API_PORT, world["disp_a"].token) as con:
        phone = await sos(pool, world["member"], IN_A)
        await con.wait_for(reported(phone), 5)
        place = await make_place("GS25 A", IN_A[0] + 0.0005, IN_A[1])
        stored = await insert_incident(
            pool,
            NewIncident(source="button", trigger="button", actor="device:x", safe_place_id=place),
        )
        assert stored is not None
        m = await con.wait_for(reported(stored.id), 5)
        assert m["incident"]["emergency_id"] == str(phone)
        assert m["incident"]["district_code"] == "A"  # from the store's position


async def test_a_phone_sos_reaches_the_consoles_with_every_dispatcher_frozen(
    stack, world, pool, redis, settings
):
    """A phone's SOS with nothing but the consoles to tell is routed by the API process itself
    (``docs/dispatch.md``): with both dispatchers stopped it is on the console, its timeline
    says routed, and the API process writes its receipt; nothing waits in the stream."""
    member = world["member"]
    os.kill(stack["d1"].popen.pid, signal.SIGSTOP)
    os.kill(stack["d2"].popen.pid, signal.SIGSTOP)
    try:
        async with (
            httpx.AsyncClient(timeout=5) as http,
            Console(API_PORT, world["disp_a"].token) as con,
        ):
            r = await http.post(
                f"http://127.0.0.1:{API_PORT}/v1/alerts",
                json={
                    "client_alert_id": str(uuid.uuid4()),
                    "location": {"lat": IN_A[0], "lon": IN_A[1], "accuracy_m": 8},
                },
                headers=member.headers,
            )
            assert r.status_code == 201, r.text
            incident_id = uuid.UUID(r.json()["incident_id"])
            msg = await con.wait_for(reported(incident_id), 5)
            assert msg["incident"]["district_code"] == "A"
            receipts = await settled(
                pool,
                "SELECT count(*) FROM dispatch_receipt r JOIN outbox o ON o.id = r.outbox_id"
                " WHERE o.incident_id = $1",
                incident_id,
            )
            assert receipts == 1
            kinds = await pool.fetch(
                "SELECT kind, actor FROM incident_event WHERE incident_id = $1 ORDER BY id",
                incident_id,
            )
            assert [(k["kind"], k["actor"]) for k in kinds] == [
                ("reported", f"member:{member.id}"),
                ("routed", "dispatch"),
            ]
            entries = await redis.xrange(settings.stream_incidents)
            assert all(
                orjson.loads(f[b"payload"])["incident_id"] != str(incident_id) for _i, f in entries
            )
    finally:
        os.kill(stack["d1"].popen.pid, signal.SIGCONT)
        os.kill(stack["d2"].popen.pid, signal.SIGCONT)


async def test_a_duress_cancel_escalates_at_once_through_the_real_intake(stack, world, pool):
    member = world["member"]
    async with httpx.AsyncClient(timeout=5) as http, Console(API_PORT, world["super"].token) as con:
        r = await http.post(
            f"http://127.0.0.1:{API_PORT}/v1/alerts",
            json={
                "client_alert_id": str(uuid.uuid4()),
                "trigger": "button",
                "location": {"lat": IN_A[0], "lon": IN_A[1]},
            },
            headers=member.headers,
        )
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident_id"]
        await con.wait_for(reported(incident_id), 5)
        r = await http.post(
            f"http://127.0.0.1:{API_PORT}/v1/alerts/{incident_id}/cancel",
            json={"pin": member.duress_pin},
            headers=member.headers,
        )
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        m = await con.wait_for(
            lambda m: (
                m["type"] == "incident"
                and m["event"] == "escalated"
                and m["incident"]["id"] == incident_id
            ),
            3,  # well before the 2 s acknowledgement deadline would add its own
        )
        assert m["data"]["reason"] == "duress_cancel"
        assert m["incident"]["duress"] is True and m["incident"]["status"] == "new"


async def test_sigterm_drains_and_exits_cleanly_with_a_health_key_while_alive(
    stack, world, redis, settings
):
    proc = start_dispatcher("e2e-drain", stack["env"])
    key = f"{settings.stream_group}:health:e2e-drain"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not await redis.exists(key):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert await redis.exists(key)
        os.kill(proc.popen.pid, signal.SIGTERM)
        rc = await asyncio.to_thread(proc.popen.wait, 15)
        assert rc == 0
        assert not await redis.exists(key)
    finally:
        proc.stop()
