"""SOS committed -> console received latency, with real processes.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ansim_test_dispatch \\
    REDIS_URL=redis://127.0.0.1:6379/12 ANSIM_ENVIRONMENT=test \\
    .venv/bin/python -m loadtests.dispatch_latency --rate 50 --seconds 20

Starts one uvicorn API and two dispatchers (ports 8310+), seeds a district, a city-wide
dispatcher and members, opens a real WebSocket console, then raises SOS at a steady rate and
reports p50/p95/p99/max of (console receive time - incident.received_at, i.e. the commit of
the one-statement insert). ``--intake http`` goes through ``POST /v1/alerts``; ``--intake
direct`` inserts with the intake's statement and kicks an in-process relay (what the API does
after its commit), so the two show whether the API kicks its relay.

It TRUNCATEs the incident tables and FLUSHDBs its Redis DB: point it at a scratch database."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
import orjson

from app.config import Settings
from app.db import create_pool
from app.dispatch.relay import OutboxRelay
from app.incidents.store import NewIncident, insert_incident
from app.redis import create_redis
from app.security.passwords import hash_secret
from app.security.tokens import MEMBER_PREFIX, STAFF_PREFIX, hash_token, new_token
from tests.e2e.harness import stack_env, start_api, start_dispatcher

API_PORT = 8310


async def seed(pool, members: int) -> tuple[str, list[tuple[uuid.UUID, str]]]:
    await pool.execute(
        "TRUNCATE location_access, delivery_attempt, assignment, offer, outbox, location_point,"
        " incident_event, incident, dispatch_receipt, staff_token, staff_district, staff,"
        " district RESTART IDENTITY CASCADE"
    )
    await pool.execute(
        "INSERT INTO district (id, code, name, boundary) VALUES ($1, 'P', 'Probe',"
        " ST_Multi(ST_MakeEnvelope(126.9, 37.5, 127.0, 37.6, 4326)))",
        uuid.uuid4(),
    )
    staff_id, token = uuid.uuid4(), new_token(STAFF_PREFIX)
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, city_wide, active)"
        " VALUES ($1, $2, 'Probe', 'dispatcher', 'x', true, true)",
        staff_id,
        f"probe-{staff_id.hex[:8]}",
    )
    await pool.execute(
        "INSERT INTO staff_token (id, staff_id, token_hash, expires_at)"
        " VALUES ($1, $2, $3, now() + interval '1 hour')",
        uuid.uuid4(),
        staff_id,
        hash_token(token),
    )
    out = []
    pin = hash_secret("1234")
    for _ in range(members):
        mid, mtoken = uuid.uuid4(), new_token(MEMBER_PREFIX)
        await pool.execute(
            "INSERT INTO member (id, phone, name, pin_hash, wrong_pin_count)"
            " VALUES ($1, $2, 'Probe', $3, 0)",
            mid,
            "+82" + str(mid.int)[:10],
            pin,
        )
        await pool.execute(
            "INSERT INTO member_token (id, member_id, token_hash) VALUES ($1, $2, $3)",
            uuid.uuid4(),
            mid,
            hash_token(mtoken),
        )
        out.append((mid, mtoken))
    return token, out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main(rate: float, seconds: float, intake: str) -> None:
    settings = Settings()
    pool = await create_pool(settings, application_name="latency-probe")
    redis = create_redis(settings, client_name="latency-probe")
    await redis.flushdb()
    # Many members, so the intake's per-member flood folding does not merge the probe's SOS.
    token, members = await seed(pool, members=int(rate * seconds) + 1)
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="600",
        ANSIM_RELAY_SWEEP_INTERVAL_S="1",
        ANSIM_DISPATCH_CLAIM_IDLE_S="5",
        ANSIM_DISPATCH_MAX_DELIVERIES="5",
    )
    procs = [await asyncio.to_thread(start_api, API_PORT, env)]
    procs += [start_dispatcher(f"probe-d{i}", env) for i in (1, 2)]
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    relay.start()
    received: dict[str, float] = {}
    try:
        import websockets

        async with (
            websockets.connect(f"ws://127.0.0.1:{API_PORT}/v1/console/stream?token={token}") as ws,
            httpx.AsyncClient(timeout=10) as http,
        ):

            async def reader() -> None:
                async for raw in ws:
                    now = time.time()
                    m = orjson.loads(raw)
                    if m.get("type") == "incident" and m.get("event") == "reported":
                        received.setdefault(m["incident"]["id"], now)

            read_task = asyncio.create_task(reader())
            await asyncio.sleep(1.5)  # dispatchers join their group
            total = int(rate * seconds)
            start = time.monotonic()
            sent: list[asyncio.Task[None]] = []

            async def one(i: int) -> None:
                mid, mtoken = members[i]
                if intake == "http":
                    r = await http.post(
                        f"http://127.0.0.1:{API_PORT}/v1/alerts",
                        json={
                            "client_alert_id": str(uuid.uuid4()),
                            "trigger": "button",
                            "location": {"lat": 37.55, "lon": 126.95, "accuracy_m": 5},
                        },
                        headers={"Authorization": f"Bearer {mtoken}"},
                    )
                    r.raise_for_status()
                else:
                    await insert_incident(
                        pool,
                        NewIncident(
                            source="app",
                            trigger="button",
                            actor="probe",
                            member_id=mid,
                            lat=37.55,
                            lon=126.95,
                            accuracy_m=5,
                        ),
                    )
                    relay.kick()

            for i in range(total):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                sent.append(asyncio.create_task(one(i)))
            await asyncio.gather(*sent)
            deadline = time.monotonic() + 15
            while len(received) < total and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            read_task.cancel()
        rows = await pool.fetch("SELECT id, extract(epoch FROM received_at) AS t FROM incident")
        lat = [
            (received[str(r["id"])] - float(r["t"])) * 1000
            for r in rows
            if str(r["id"]) in received
        ]
        print(
            f"intake={intake} rate={rate}/s seconds={seconds} sent={total} "
            f"incidents={len(rows)} reached_console={len(lat)}"
        )
        if lat:
            print(
                f"commit->console ms: p50={pct(lat, 50):.1f} p95={pct(lat, 95):.1f} "
                f"p99={pct(lat, 99):.1f} max={max(lat):.1f} mean={statistics.mean(lat):.1f}"
            )
        if relay.stats.delays:
            d = [x * 1000 for x in relay.stats.delays]
            print(f"probe relay commit->XADD ms: p50={pct(d, 50):.1f} p99={pct(d, 99):.1f}")
    finally:
        await relay.stop()
        for p in procs:
            p.stop()
        await redis.aclose()
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--intake", choices=("http", "direct"), default="http")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.intake))
