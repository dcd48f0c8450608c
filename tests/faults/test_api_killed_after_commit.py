"""Fault (a): the API process is SIGKILLed between the commit and the response. The phone got
no answer, so it retries with the same client_alert_id (to the API its supervisor restarted):
exactly one incident, and it reaches the console (the dead process never kicked its relay; a
dispatcher's relay sweep publishes the committed outbox row)."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from tests.e2e.harness import Console, free_ports, stack_env, start_api, start_dispatcher
from tests.faults.common import (
    Phone,
    make_city_dispatcher,
    make_members,
    reported_ids,
    write_artifact,
)

KILLS = 3


async def test_sigkill_between_commit_and_response_then_a_retry_is_one_incident(
    migrated, settings, pool
):
    env = stack_env(redis_url=settings.redis_url, gateway_port=None, ANSIM_ACK_DEADLINE_S="600")
    api_port, console_port = free_ports(2)
    console_token = await make_city_dispatcher(pool)
    phones = [Phone(token) for token in await make_members(pool, KILLS)]
    procs = {
        "dispatcher": start_dispatcher("faults-kill-d1", env),
        "console_api": await asyncio.to_thread(start_api, console_port, env),
    }
    base = f"http://127.0.0.1:{api_port}"
    started = time.monotonic()
    try:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            Console(console_port, console_token) as console,
        ):
            killed = 0
            for phone in phones:
                doomed = await asyncio.to_thread(
                    start_api, api_port, {**env, "ANSIM_FAULT": "kill_after_commit"}
                )
                procs["doomed"] = doomed
                assert await phone.send(http, base) is None  # the connection died, no answer
                rc = await asyncio.to_thread(doomed.popen.wait, 10)
                assert rc == -signal.SIGKILL
                killed += 1
            # Each SOS is committed although nobody was told.
            committed = await pool.fetchval("SELECT count(*) FROM incident")
            assert committed == KILLS
            procs["api"] = await asyncio.to_thread(start_api, api_port, env)
            for phone in phones:
                r = await phone.send(http, base)
                assert r is not None and r.status_code == 200, r and r.text  # a replay
            ids = {phone.incident_id for phone in phones}
            got = await console.wait_count(
                lambda m: m["type"] == "incident" and m["event"] == "reported", KILLS, 15
            )
            await asyncio.sleep(0.5)  # a duplicate would arrive about now
            delivered = reported_ids(console.messages)
        assert {m["incident"]["id"] for m in got} == ids
        assert sorted(delivered) == sorted(ids)  # each once
        rows = await pool.fetch("SELECT member_id, count(*) AS n FROM incident GROUP BY member_id")
        assert len(rows) == KILLS and all(r["n"] == 1 for r in rows)
    finally:
        for proc in procs.values():
            proc.stop()
    write_artifact(
        "api_killed_after_commit",
        {
            "faults_injected": killed,
            "fault": "SIGKILL of the API after the SOS commit, before the response",
            "sent": len(phones),
            "answered_before_kill": 0,
            "accepted_after_retry": sum(1 for p in phones if p.incident_id),
            "incidents": committed,
            "delivered_to_console": len(set(delivered)),
            "console_duplicates": len(delivered) - len(set(delivered)),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
