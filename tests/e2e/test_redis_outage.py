"""Redis stopped and restarted while SOS keep arriving through the real HTTP intake: every SOS is
accepted (committed in PostgreSQL) and every one reaches the console once Redis is back.

Runs against a private redis-server on a port of our own (never the shared one)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.e2e.harness import (
    Console,
    free_ports,
    stack_env,
    start_api,
    start_dispatcher,
    start_redis,
)

#: Chosen free when the stack starts (two suites on one machine must not collide).
API_PORT, REDIS_PORT = 0, 0
IN_A = {"lat": 37.52, "lon": 126.92, "accuracy_m": 8}


@pytest.fixture
async def private_stack(migrated, app):
    global API_PORT, REDIS_PORT
    API_PORT, REDIS_PORT = free_ports(2)
    # The in-process test app shares this database but not this Redis: its relay would publish
    # our rows to the other Redis. Pause it (one database, one Redis is the real deployment).
    await app.state.relay.stop()
    redis_proc = await asyncio.to_thread(start_redis, REDIS_PORT)
    env = stack_env(
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="600",
    )
    procs = {"redis": redis_proc}
    try:
        procs["api"] = await asyncio.to_thread(start_api, API_PORT, env)
        procs["d1"] = start_dispatcher("outage-d1", env)
        yield procs
    finally:
        for key in ("d1", "api", "redis"):
            if key in procs:
                procs[key].stop()
        app.state.relay.start()


async def _post_sos(http, member):
    r = await http.post(
        f"http://127.0.0.1:{API_PORT}/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "trigger": "button", "location": IN_A},
        headers=member.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["incident_id"]


async def test_redis_restart_while_sos_arrive_loses_nothing(
    private_stack, make_district, make_staff, make_member, pool
):
    district = await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    dispatcher = await make_staff("dispatcher", district_ids=(district,))
    # One member per SOS: the intake folds a member's repeated SOS into her open alert.
    members = [await make_member() for _ in range(7)]
    ids: list[str] = []
    async with httpx.AsyncClient(timeout=10) as http:
        async with Console(API_PORT, dispatcher.token) as con:
            ids.append(await _post_sos(http, members[0]))
            await con.wait_count(lambda m: m["type"] == "incident", 1, 5)
            cursor = con.cursor
        private_stack["redis"].kill()  # SIGKILL: Redis loses everything (no persistence)
        private_stack["redis"].popen.wait(5)
        for member in members[1:6]:
            ids.append(await _post_sos(http, member))  # accepted while Redis is down
        await asyncio.sleep(1)
        unpublished = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        assert unpublished >= 5
        private_stack["redis"] = await asyncio.to_thread(start_redis, REDIS_PORT)
        ids.append(await _post_sos(http, members[6]))
        async with Console(API_PORT, dispatcher.token, cursor=cursor) as con:
            got = await con.wait_count(
                lambda m: m["type"] == "incident" and m["event"] == "reported", 6, 20
            )
        assert {m["incident"]["id"] for m in got} == set(ids[1:])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            break
        await asyncio.sleep(0.1)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
