"""Fault (e): notifications outlast the gateway and the dispatcher, with real processes.

1. The SMS gateway is down (connection refused) for 20 s while a stream of SOS with guardians
   comes in: every guardian's text is retried from PostgreSQL, and once the gateway is back each
   is delivered exactly once (counted by Idempotency-Key at the receiver).
2. The dispatcher is SIGKILLed between a failed SMS and its retry: nothing is running when the
   retry comes due, and a dispatcher started later still delivers it, once.

Time is shortened by settings (backoff cap 2 s, deadline 120 s); the defaults (cap 60 s,
deadline 30 min) outlast a 10-minute outage the same way."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter

import httpx

from tests.e2e.harness import (
    GatewayReceiver,
    free_ports,
    settled,
    stack_env,
    start_api,
    start_dispatcher,
)
from tests.faults.common import Phone, make_members, write_artifact

SOS_COUNT = 20
GUARDIANS_EACH = 2
OUTAGE_S = 20.0


async def _add_guardians(pool, tokens: list[str], each: int) -> None:
    members = await pool.fetch(
        "SELECT m.id FROM member m JOIN member_token t ON t.member_id = m.id"
    )
    assert len(members) == len(tokens)
    await pool.executemany(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'G', $3)",
        [
            (uuid.uuid4(), m["id"], f"+8210{i:04d}{n}")
            for i, m in enumerate(members)
            for n in range(each)
        ],
    )


async def test_every_guardian_text_is_delivered_once_after_a_20_second_gateway_outage(
    migrated, settings, pool
):
    api_port, gateway_port = free_ports(2)
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=gateway_port,
        ANSIM_ACK_DEADLINE_S="600",  # no escalation texts: the report's are what is counted
        ANSIM_NOTIFY_BACKOFF_BASE_S="0.5",
        ANSIM_NOTIFY_BACKOFF_CAP_S="2",
        ANSIM_NOTIFY_DEADLINE_S="120",
        ANSIM_NOTIFY_POLL_S="0.5",
    )
    tokens = await make_members(pool, SOS_COUNT)
    await _add_guardians(pool, tokens, GUARDIANS_EACH)
    expected = SOS_COUNT * GUARDIANS_EACH
    procs = {
        "d1": start_dispatcher("faults-notify-d1", env),
        "d2": start_dispatcher("faults-notify-d2", env),
        "api": await asyncio.to_thread(start_api, api_port, env),
    }
    gateway = GatewayReceiver(gateway_port)
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            outage_started = time.monotonic()
            for token in tokens:  # a stream of SOS over the first half of the outage
                r = await Phone(token).send(http, f"http://127.0.0.1:{api_port}")
                assert r is not None and r.status_code == 201, r and r.text
                await asyncio.sleep(OUTAGE_S / 2 / SOS_COUNT)
            queued = await settled(
                pool,
                "SELECT count(*) = $1 FROM notification WHERE status = 'pending'",
                expected,
                within=10,
            )
            assert queued
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
            failed_attempts = await pool.fetchval(
                "SELECT count(*) FROM delivery_attempt WHERE NOT ok"
            )
            assert failed_attempts > expected  # each tried, again and again, while down
            assert (
                await pool.fetchval("SELECT count(*) FROM notification WHERE status <> 'pending'")
                == 0
            )
            await gateway.start()
            back = time.monotonic()
            deadline = back + 30
            while time.monotonic() < deadline:
                if len({m["idempotency_key"] for m in gateway.received}) >= expected:
                    break
                await asyncio.sleep(0.1)
            delivered_after_s = time.monotonic() - back
            await asyncio.sleep(2)  # a duplicate would arrive about now
    finally:
        for proc in procs.values():
            proc.stop()
        await gateway.stop()
    keys = Counter(m["idempotency_key"] for m in gateway.received)
    statuses = dict(await pool.fetch("SELECT status, count(*) FROM notification GROUP BY status"))
    notified = await pool.fetchval("SELECT count(*) FROM incident_event WHERE kind = 'notified'")
    write_artifact(
        "notify_gateway_outage",
        {
            "fault": f"SMS gateway refusing connections for {OUTAGE_S:.0f} s (backoff cap 2 s)",
            "sent": SOS_COUNT,
            "guardian_texts_expected": expected,
            "failed_attempts_during_outage": failed_attempts,
            "delivered": len(keys),
            "delivered_twice": sum(1 for n in keys.values() if n > 1),
            "all_delivered_within_s_of_return": round(delivered_after_s, 1),
            "notified_events": notified,
            "notifications": statuses,
            "signature_rejections": gateway.rejected,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert len(keys) == expected and set(keys.values()) == {1}
    assert statuses == {"sent": expected}
    assert notified == expected and gateway.rejected == 0
    assert all(
        m["path"] == "/sms" and "guardian/ag_" in m["message"]["text"] for m in gateway.received
    )


async def test_a_dispatcher_killed_between_a_failed_sms_and_its_retry_still_delivers_it(
    migrated, settings, pool
):
    api_port, gateway_port = free_ports(2)
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=gateway_port,
        ANSIM_ACK_DEADLINE_S="600",
        # The retry is due 2-4 s after the failure: the dispatcher is dead by then.
        ANSIM_NOTIFY_BACKOFF_BASE_S="4",
        ANSIM_NOTIFY_BACKOFF_CAP_S="4",
        ANSIM_NOTIFY_POLL_S="0.2",
    )
    (token,) = await make_members(pool, 1)
    await _add_guardians(pool, [token], 1)
    gateway = GatewayReceiver(gateway_port, fail_first=1)  # the first attempt gets a 503
    await gateway.start()
    procs = {
        "d1": start_dispatcher("faults-notify-kill-d1", env),
        "api": await asyncio.to_thread(start_api, api_port, env),
    }
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await Phone(token).send(http, f"http://127.0.0.1:{api_port}")
            assert r is not None and r.status_code == 201
        assert await settled(pool, "SELECT count(*) FROM delivery_attempt", within=15) == 1
        procs["d1"].kill(signal.SIGKILL)
        rc = await asyncio.to_thread(procs["d1"].popen.wait, 10)
        assert rc == -signal.SIGKILL
        row = await pool.fetchrow("SELECT status, attempts, last_error FROM notification")
        assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")
        await asyncio.sleep(5)  # past the retry: nobody is running to make it
        assert gateway.received == []
        restarted_at = time.monotonic()
        procs["d2"] = start_dispatcher("faults-notify-kill-d2", env)
        sent = await settled(
            pool, "SELECT count(*) FROM notification WHERE status = 'sent'", within=20
        )
        delivered_after_s = time.monotonic() - restarted_at
        await asyncio.sleep(1)
    finally:
        for proc in procs.values():
            proc.stop()
        await gateway.stop()
    attempts = await pool.fetch("SELECT attempt, ok, http_status FROM delivery_attempt ORDER BY id")
    write_artifact(
        "notify_dispatcher_killed",
        {
            "fault": "SIGKILL of the dispatcher after a failed SMS (503), before its retry",
            "sent": 1,
            "delivered": len(gateway.received),
            "attempts": [(a["attempt"], a["ok"], a["http_status"]) for a in attempts],
            "delivered_within_s_of_restart": round(delivered_after_s, 1),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert sent == 1 and len(gateway.received) == 1
    assert [(a["attempt"], a["ok"], a["http_status"]) for a in attempts] == [
        (1, False, 503),
        (2, True, 200),
    ]
