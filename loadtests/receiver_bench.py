"""The alarm receiver's throughput and ACK latency: messages per second and p50/p99 from the
last byte of a frame sent to its ACK received, on this machine.

    python -m loadtests.receiver_bench [--panels 50] [--duration 15] [--kind null|test|mixed]
                                       [--encrypted] [--udp]

It migrates its own database (``--db-url``), registers ``--panels`` accounts at one store,
starts ``ansim receiver`` as its own process, and has every panel send frames back to back over
its own TCP connection (or UDP), each waiting for its ACK (closed loop: the rate is what the
receiver sustains). ``null`` is a link test (the supervision update), ``test`` a Contact ID
602 periodic test (the account's log as well), ``mixed`` adds troubles and restores (console
messages through the outbox) among them. The figures go to stdout as JSON and into
docs/performance.md by hand (docs/alarm-panels.md "Performance").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from app.receiver import protocol as dc09
from tests.e2e.harness import free_port, wait_listening
from tests.receiver.simulator import Panel

ROOT = Path(__file__).resolve().parents[1]
KEY = "0123456789abcdef0123456789abcdef"


def _env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": args.db_url,
            "REDIS_URL": args.redis_url,
            "ANSIM_ENVIRONMENT": "test",
            "ANSIM_DB_HOT_POOL_SIZE": str(args.pool),
        }
    )
    return env


async def _seed(db_url: str, panels: int, encrypted: bool) -> list[str]:
    from app.receiver import accounts

    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("TRUNCATE alarm_event, alarm_account, device, safe_place CASCADE")
        place = uuid.uuid4()
        await conn.execute(
            "INSERT INTO safe_place (id, kind, name, address, phone, open_24h, is_safety_house,"
            " active, source, external_ref, geog) VALUES ($1, 'convenience_store', 'Bench',"
            " 'Seoul', '02-000-0000', true, true, true, 'bench', $2,"
            " ST_SetSRID(ST_MakePoint(126.98, 37.56), 4326)::geography)",
            place,
            str(place),
        )
        numbers = [f"{0xB000 + i:X}" for i in range(panels)]
        for number in numbers:
            await accounts.create_account(
                conn,
                place_id=place,
                account=number,
                key=KEY if encrypted else None,
                supervision_s=3600,
            )
        return numbers
    finally:
        await conn.close()


_MIXED = ["NULL", "602", "602", "NULL", "301", "NULL", "3301", "602"]


async def _panel_loop(
    panel: Panel, kind: str, until: float, latencies: list[float], answers: dict[str, int]
) -> None:
    i = 0
    while time.monotonic() < until:
        what = {"null": "NULL", "test": "602"}.get(kind) or _MIXED[i % len(_MIXED)]
        i += 1
        started = time.perf_counter()
        if what == "NULL":
            answer = await panel.link_test()
        elif what == "3301":
            answer = await panel.contact_id(3, 301, 0, 0)
        else:
            answer = await panel.contact_id(1, int(what), 0, 0)
        latencies.append(time.perf_counter() - started)
        answers[answer.kind or "none"] = answers.get(answer.kind or "none", 0) + 1
    await panel.close()


async def drive(args: argparse.Namespace, port: int, numbers: list[str]) -> dict[str, object]:
    key = dc09.parse_key(KEY) if args.encrypted else None
    panels = [
        Panel("127.0.0.1", port, n, key=key, udp=args.udp, ack_timeout_s=5, retries=0)
        for n in numbers
    ]
    # Warm-up: every panel's account is read once, every connection opened.
    await asyncio.gather(*(p.link_test() for p in panels))
    latencies: list[float] = []
    answers: dict[str, int] = {}
    started = time.monotonic()
    until = started + args.duration
    await asyncio.gather(*(_panel_loop(p, args.kind, until, latencies, answers) for p in panels))
    elapsed = time.monotonic() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [0.0] * 99
    return {
        "kind": args.kind,
        "transport": "udp" if args.udp else "tcp",
        "encrypted": args.encrypted,
        "panels": args.panels,
        "duration_s": round(elapsed, 1),
        "messages": len(latencies),
        "messages_per_s": round(len(latencies) / elapsed, 1),
        "ack_p50_ms": round(q[49] * 1000, 2),
        "ack_p99_ms": round(q[98] * 1000, 2),
        "ack_max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "answers": answers,
        "cpus": os.cpu_count(),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    env = _env(args)
    subprocess.run(["bash", "scripts/ensure_db.sh", args.db_url], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True
    )
    numbers = asyncio.run(_seed(args.db_url, args.panels, args.encrypted))
    port = free_port()
    with open(f"/tmp/ansim-receiver-bench-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "receiver", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_listening(port)
            return asyncio.run(drive(args, port, numbers))
        finally:
            proc.terminate()
            proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.receiver_bench", description=__doc__)
    p.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/ansim_bench_receiver")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--panels", type=int, default=50)
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--kind", choices=["null", "test", "mixed"], default="mixed")
    p.add_argument("--encrypted", action="store_true")
    p.add_argument("--udp", action="store_true")
    p.add_argument("--pool", type=int, default=8, help="the receiver's PostgreSQL connections")
    result = run(p.parse_args(argv))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
