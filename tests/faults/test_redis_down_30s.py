"""Fault (b): Redis is killed (SIGKILL, no persistence: its streams, consumer group and console
log are lost) and stays down for 30 s while SOS keep arriving at a steady rate through the real
HTTP intake. Every SOS is answered 201 (committed in PostgreSQL), and once Redis is back every
one reaches the console: sent == accepted == delivered.

Entries that were published to the lost Redis but not yet processed are found by the
reconciler (published, no dispatch receipt) and published again."""

from __future__ import annotations

import asyncio
import os
import time

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
from tests.faults.common import (
    Phone,
    make_city_dispatcher,
    make_members,
    reported_ids,
    write_artifact,
)

#: Chosen free when the stack starts (two suites on one machine must not collide).
API_PORT, REDIS_PORT = 0, 0
OUTAGE_S = float(os.environ.get("ANSIM_FAULT_REDIS_OUTAGE_S", "30"))
RATE = 4.0  # SOS per second
BEFORE_S, AFTER_S = 3.0, 4.0


@pytest.fixture
async def private_stack(migrated, app):
    global API_PORT, REDIS_PORT
    API_PORT, REDIS_PORT = free_ports(2)
    # The in-process test app shares this database but not this Redis: its relay would publish
    # our rows to the other Redis. Pause it (one database, one Redis is the real deployment).
    await app.state.relay.stop()
    procs = {"redis": await asyncio.to_thread(start_redis, REDIS_PORT)}
    env = stack_env(
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="600",
        ANSIM_RELAY_RECONCILE_AFTER_S="3",
    )
    try:
        procs["api"] = await asyncio.to_thread(start_api, API_PORT, env)
        procs["d1"] = start_dispatcher("faults-redis-d1", env)
        procs["d2"] = start_dispatcher("faults-redis-d2", env)
        yield procs
    finally:
        for key in ("d1", "d2", "api", "redis"):
            if key in procs:
                procs[key].stop()
        app.state.relay.start()


async def test_redis_down_30s_under_load_every_sos_accepted_and_delivered(private_stack, pool):
    console_token = await make_city_dispatcher(pool)
    total = int((BEFORE_S + OUTAGE_S + AFTER_S) * RATE)
    phones = [Phone(token) for token in await make_members(pool, total)]
    base = f"http://127.0.0.1:{API_PORT}"
    statuses: list[int | str] = []
    down_window: list[float] = []

    async def load(http: httpx.AsyncClient) -> None:
        start = time.monotonic()
        tasks = []
        for i, phone in enumerate(phones):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(phone.send(http, base)))
        await asyncio.gather(*tasks)
        statuses.extend(p.attempts[0] for p in phones)

    async def outage() -> None:
        await asyncio.sleep(BEFORE_S)
        private_stack["redis"].kill()  # SIGKILL: everything in Redis is gone
        await asyncio.to_thread(private_stack["redis"].popen.wait, 5)
        down_window.append(time.monotonic())
        await asyncio.sleep(OUTAGE_S)
        private_stack["redis"] = await asyncio.to_thread(start_redis, REDIS_PORT)
        down_window.append(time.monotonic())

    async with httpx.AsyncClient(timeout=20) as http, Console(API_PORT, console_token) as console:
        await asyncio.gather(load(http), outage())
        accepted = {p.incident_id for p in phones if p.incident_id}
        during = sum(
            1 for p in phones if p.incident_id and p.attempts and p.attempts[0] in (200, 201)
        )
        try:
            await console.wait_count(
                lambda m: m["type"] == "incident" and m["event"] == "reported", len(accepted), 45
            )
        finally:
            delivered = reported_ids(console.messages)
    # A console connecting afterwards gets them all in its snapshot of open incidents (the
    # console log before the crash was lost with Redis; the database has everything).
    async with Console(API_PORT, console_token) as late:
        snapshot = await late.wait_for(lambda m: m["type"] == "snapshot", 10)
        in_snapshot = {i["id"] for i in snapshot["incidents"]}
    accepted_during_outage = await pool.fetchval(
        "SELECT count(*) FROM incident WHERE received_at BETWEEN"
        " now() - make_interval(secs => $1) AND now() - make_interval(secs => $2)",
        time.monotonic() - down_window[0],
        time.monotonic() - down_window[1],
    )
    write_artifact(
        "redis_down_30s",
        {
            "faults_injected": 1,
            "fault": f"Redis SIGKILLed (no persistence), down {OUTAGE_S:.0f} s, restarted empty",
            "rate_per_s": RATE,
            "sent": len(phones),
            "accepted_2xx_first_try": statuses.count(201),
            "non_2xx": len([s for s in statuses if s != 201]),
            "accepted_while_redis_down": accepted_during_outage,
            "incidents": await pool.fetchval("SELECT count(*) FROM incident"),
            "delivered_to_console": len(set(delivered) & accepted),
            "console_duplicates": len(delivered) - len(set(delivered)),
            "in_a_new_consoles_snapshot": len(in_snapshot & accepted),
        },
    )
    assert statuses == [201] * len(phones), statuses
    assert during == len(phones)
    assert accepted_during_outage >= int(OUTAGE_S * RATE) - 2
    assert set(delivered) == accepted
    assert in_snapshot == accepted
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
