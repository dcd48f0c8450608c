"""Home sensors end to end, with real processes (an API, dispatchers, a WebSocket console): a
door opened while armed away with no disarm reaches the district console once the (short)
entry delay runs out, even across a dispatcher restart; a duress disarm at the door answers
the keypad exactly like her PIN and is red (duress, escalated) on the console."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from app.devices.signing import sign_request
from tests.e2e.harness import Console, free_port, stack_env, start_api, start_dispatcher
from tests.homes.helpers import DISTRICT, Sensor, make_home

#: Long enough for arm, open and disarm (two Argon2 checks) on a loaded machine.
ENTRY_DELAY_S = 4.0


@pytest.fixture(scope="module")
async def stack(migrated, settings):
    port = free_port()
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_HOME_ENTRY_DELAY_S=str(ENTRY_DELAY_S),
        ANSIM_HOME_ENTRY_CHECK_S="0.2",
    )
    api = await asyncio.to_thread(start_api, port, env)
    procs = {"api": api, "dispatcher": start_dispatcher("e2e-homes", env)}
    try:
        yield {"port": port, "env": env, "procs": procs}
    finally:
        for proc in procs.values():
            proc.stop()


async def _signal(http: httpx.AsyncClient, sensor: Sensor, body: dict) -> httpx.Response:
    raw = orjson.dumps(body)
    return await http.post(sensor.url, content=raw, headers=sign_request(sensor.secret, raw))


def _sensor_incident(m: dict, event: str) -> bool:
    return m["type"] == "incident" and m["event"] == event and m["incident"]["source"] == "sensor"


async def test_a_door_opened_while_armed_reaches_the_console_after_the_entry_delay(
    stack, pool, make_district, make_member, make_staff
):
    district = await make_district(*DISTRICT)
    her = await make_member()
    home = await make_home(pool, her.id)
    dispatcher = await make_staff(district_ids=(district,))
    port = stack["port"]
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        Console(port, dispatcher.token) as console,
    ):
        r = await http.post(
            f"/v1/me/homes/{home.id}/arm", json={"mode": "away"}, headers=her.headers
        )
        assert r.status_code == 200, r.text
        # The dispatcher is stopped while the delay runs: the due time is in PostgreSQL.
        stack["procs"]["dispatcher"].stop()
        opened = time.monotonic()
        assert (await _signal(http, home.door, {"type": "open"})).status_code == 200
        await asyncio.sleep(ENTRY_DELAY_S + 0.5)
        assert await pool.fetchval("SELECT count(*) FROM incident") == 0
        assert not [m for m in console.messages if m["type"] == "incident"]
        stack["procs"]["dispatcher"] = start_dispatcher("e2e-homes-2", stack["env"])
        msg = await console.wait_for(lambda m: _sensor_incident(m, "reported"), 15)
        took = time.monotonic() - opened
        print(f"\nhome entry alarm on the console {took:.2f} s after the door opened")
        incident = msg["incident"]
        assert incident["trigger"] == "entry_delay_expired"
        assert incident["district_code"] == DISTRICT[0]
        assert not incident["silent"]
        detail = await http.get(
            f"/v1/console/incidents/{incident['id']}", headers=dispatcher.headers
        )
        home_view = detail.json()["home"]
        assert home_view["sensor"]["kind"] == "door"
        assert [e["kind"] for e in home_view["arming_history"]] == [
            "arm_away",
            "entry_started",
            "alarm",
        ]


async def test_a_duress_disarm_is_silent_at_home_and_red_on_the_console(
    stack, pool, make_district, make_member, make_staff
):
    district = await make_district(*DISTRICT)
    a, b = await make_member(), await make_member()
    home_a, home_b = await make_home(pool, a.id), await make_home(pool, b.id)
    dispatcher = await make_staff(district_ids=(district,))
    port = stack["port"]
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        Console(port, dispatcher.token) as console,
    ):
        answers = []
        for home, pin in ((home_a, a.pin), (home_b, b.duress_pin)):
            assert (await _signal(http, home.keypad, {"type": "arm_away"})).status_code == 200
            assert (await _signal(http, home.door, {"type": "open"})).status_code == 200
            answers.append(await _signal(http, home.keypad, {"type": "disarm", "pin": pin}))

        def shape(r: httpx.Response) -> tuple:
            body = r.json()
            headers = sorted(k for k in r.headers if k not in ("date", "content-length"))
            return (r.status_code, list(body), body["type"], body["home"]["state"], headers)

        assert answers[0].status_code == 200
        assert shape(answers[0]) == shape(answers[1])  # the keypad cannot tell them apart
        escalated = await console.wait_for(
            lambda m: _sensor_incident(m, "escalated") and m["incident"]["duress"], 10
        )
        incident = escalated["incident"]
        assert incident["silent"] and incident["trigger"] == "duress_disarm"
        assert (
            await pool.fetchval("SELECT home_id FROM incident WHERE id = $1::uuid", incident["id"])
            == home_b.id
        )
        # Neither entry delay runs on: no alarm for either home afterwards.
        await asyncio.sleep(ENTRY_DELAY_S + 0.5)
        rows = await pool.fetch("SELECT trigger, home_id FROM incident")
        assert [(r["trigger"], r["home_id"]) for r in rows] == [("duress_disarm", home_b.id)]


async def test_the_in_home_buttons_request_id_reaches_the_console(
    stack, pool, make_district, make_member, make_staff
):
    district = await make_district(*DISTRICT)
    her = await make_member()
    home = await make_home(pool, her.id)
    dispatcher = await make_staff(district_ids=(district,))
    port = stack["port"]
    raw = orjson.dumps({"type": "panic"})
    headers = {**sign_request(home.button.secret, raw), "X-Request-ID": "home-btn-7a1"}
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        Console(port, dispatcher.token) as console,
    ):
        r = await http.post(home.button.url, content=raw, headers=headers)
        assert r.status_code == 201, r.text
        msg = await console.wait_for(lambda m: _sensor_incident(m, "reported"), 10)
    assert msg["incident"]["id"] == r.json()["incident_id"]
    assert msg["request_id"] == "home-btn-7a1"
